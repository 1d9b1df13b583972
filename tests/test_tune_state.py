"""Tune-state pickles cannot run code on ``resume``: the allowlist screen (dnr_sweep/foundation/pickle_screen.py,
dnr_sweep/sweep/tune_state.py) against the known bypasses of a blocklist, in every file Tune unpickles.

Each payload is first proven hostile: loaded unsafely (``pickle.loads``) it creates a marker folder. Then
the screen must refuse it, and ``dnr-sweep resume`` on a folder holding it must exit 2 with a message,
leave no marker, and start no Ray.
"""

from __future__ import annotations

import argparse
import functools
import json
import operator
import os
import pickle
import struct
from pathlib import Path

import pytest

from dnr_sweep.foundation.pickle_screen import PicklePolicy, PickleRefused, referenced_globals, screen
from dnr_sweep.sweep import tune_state
from tests.test_hostile import _run_folder, call

# ------------------------------------------------------------------------------------------------
# A tiny pickle assembler (protocol 4 opcodes), for payloads pickle.dumps would never write


def _str(text: str) -> bytes:
    raw = text.encode()
    return b"\x8c" + bytes([len(raw)]) + raw if len(raw) < 256 else b"X" + struct.pack("<I", len(raw)) + raw


def _global(module: str, name: str) -> bytes:
    return _str(module) + _str(name) + b"\x93"  # STACK_GLOBAL


def _pickle(body: bytes) -> bytes:
    return b"\x80\x04" + body + b"."


def _call1(func: bytes, arg: bytes) -> bytes:
    return func + arg + b"\x85R"  # TUPLE1 REDUCE


def payloads(marker: Path) -> dict[str, bytes]:
    """Pickles that, loaded unsafely, create ``marker`` (each a known way around a blocklist)."""
    m = str(marker)
    mkdir_via_locate = _call1(_global("pydoc", "locate"), _str("os.mkdir"))
    os_module = _call1(_global("importlib", "import_module"), _str("os"))

    class ByValue:  # cloudpickle ships the lambda's code by value: _make_function over types.CodeType
        def __reduce__(self):
            return (lambda path: __import__("os").mkdir(path)), (m,)

    import ray.cloudpickle

    return {
        "pydoc.locate -> os.mkdir (the issue's case)": _pickle(_call1(mkdir_via_locate, _str(m))),
        "pydoc.locate -> os.system": _pickle(
            _call1(_call1(_global("pydoc", "locate"), _str("os.system")), _str(f"mkdir '{m}'"))
        ),
        "builtins.getattr over __import__": _pickle(
            _call1(
                _global("builtins", "getattr")
                + _call1(_global("builtins", "__import__"), _str("os"))
                + _str("mkdir")
                + b"\x86R",  # TUPLE2 REDUCE
                _str(m),
            )
        ),
        "importlib.import_module + operator.attrgetter": _pickle(
            _call1(_call1(_call1(_global("operator", "attrgetter"), _str("mkdir")), os_module), _str(m))
        ),
        "functools.partial": pickle.dumps(_Partial(m), protocol=4),
        "cloudpickle by-value code (types.CodeType, _make_function)": ray.cloudpickle.dumps(ByValue()),
        "STACK_GLOBAL operands hidden by POP (bypassed the old screen)": _pickle(
            _str("os") + _str("mkdir") + _str("decoy") + b"0" + b"\x93" + _str(m) + b"\x85R"
        ),
        "memoised module name": _pickle(
            _str("os") + b"\x94" + b"0" + b"h\x00" + _str("mkdir") + b"\x93" + _str(m) + b"\x85R"
        ),  # fmt: skip
        "protocol 2 GLOBAL of __builtin__.eval": b"\x80\x02c__builtin__\neval\n"
        + _str(f"__import__('os').mkdir({m!r})")
        + b"\x85R.",
    }


class _Partial:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return functools.partial(os.mkdir, self.marker), ()


def _refused_only() -> dict[str, bytes]:
    """Pickles that use a screened name in a way the policy forbids (not runnable payloads by themselves)."""
    ext = b"\x80\x04\x82\x01."  # EXT1 code 1: whatever copyreg.add_extension registered
    patch_class = _pickle(_global("ray.tune", "RunConfig") + b"}" + b"b")  # BUILD on the imported class itself
    fill_global = _pickle(_global("collections", "OrderedDict") + b"(" + _str("k") + _str("v") + b"u")  # SETITEMS
    call_reference = _pickle(_call1(_global("ray.train._internal.storage", "_upload_to_fs_path"), _str("/etc")))
    init_class = _pickle(_call1(_global("ray.tune.experiment.experiment", "Experiment"), _str("x")))
    call_result = _pickle(_call1(_call1(_global("collections", "deque"), b"]"), _str("x")))  # calls a deque
    computed_name = _pickle(_call1(_global("collections", "deque"), b"]") + _str("x") + b"\x93")
    return {"EXT1": ext, "BUILD on an imported class": patch_class, "SETITEMS into an imported object": fill_global,
            "calling a reference-only function": call_reference, "running a class's __init__": init_class,
            "calling an object the pickle built": call_result, "a computed STACK_GLOBAL": computed_name,
            "truncated": b"\x80\x04\x8c\x02o", "empty": b"", "not a pickle": b"{}", "no STOP": b"\x80\x04N"}  # fmt: skip


@pytest.mark.parametrize("name", sorted(payloads(Path("/x"))))
def test_each_payload_is_hostile_when_loaded_unsafely_and_refused_by_the_screen(tmp_path, name):
    marker = tmp_path / "PWNED"
    data = payloads(marker)[name]
    with pytest.raises(PickleRefused):
        tune_state.screen_tune_pickle(data)
    assert not marker.exists()
    import ray.cloudpickle

    try:  # the proof the test is not vacuous: this pickle does run code when loaded as Tune loads it
        ray.cloudpickle.loads(data)
    except Exception:  # noqa: BLE001 - some payloads fail after their side effect (os.system returns)
        pass
    assert marker.exists(), f"{name}: the payload did not run unsafely, so refusing it proves nothing"


@pytest.mark.parametrize("name", sorted(_refused_only()))
def test_forbidden_uses_of_allowed_names_are_refused(name):
    with pytest.raises(PickleRefused) as info:
        tune_state.screen_tune_pickle(_refused_only()[name])
    assert str(info.value)


def test_only_argparses_own_identity_function_may_be_shipped_by_value():
    import ray.cloudpickle

    identity = argparse.ArgumentParser()._registries["type"][None]
    tune_state.screen_tune_pickle(ray.cloudpickle.dumps(identity))  # Tune's grid searcher state holds it

    def identity_lookalike(string):  # same name and shape, different code
        return string or __import__("os")

    identity_lookalike.__qualname__ = identity.__qualname__
    with pytest.raises(PickleRefused, match="code object by value"):
        tune_state.screen_tune_pickle(ray.cloudpickle.dumps(identity_lookalike))


def test_plain_data_and_names_as_data_pass():
    tune_state.screen_tune_pickle(pickle.dumps({"os": ["system", "eval"], "n": 1.5, "t": (1, None, True)}))
    assert referenced_globals(pickle.dumps(operator.add)) == [("_operator", "add")]
    with pytest.raises(PickleRefused, match="imports _operator.add"):
        screen(pickle.dumps(operator.add), PicklePolicy(frozenset()))


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_every_protocol_is_screened(tmp_path, protocol):
    marker = tmp_path / "PWNED"
    with pytest.raises(PickleRefused, match="imports functools.partial"):
        tune_state.screen_tune_pickle(pickle.dumps(_Partial(str(marker)), protocol=protocol))
    with pytest.raises(PickleRefused, match="imports posix.mkdir"):
        tune_state.screen_tune_pickle(pickle.dumps({"x": [_Mkdir(str(marker))]}, protocol=protocol))
    assert not marker.exists()


class _Mkdir(_Partial):
    def __reduce__(self):
        return os.mkdir, (self.marker,)


# ------------------------------------------------------------------------------------------------
# Through `dnr-sweep resume`: every file Tune unpickles, every payload


def _place(run_dir: Path, where: str, data: bytes) -> Path:
    """Put the pickle ``data`` where Tune would unpickle it on a restore; return the file holding it."""
    if where == "tuner.pkl":
        path = run_dir / "tuner.pkl"
        path.write_bytes(data)
    elif where in ("basic-variant-state", "search_gen_state", "searcher-state", "callback-states"):
        suffix = ".pkl" if where in ("searcher-state", "callback-states") else ".json"
        path = run_dir / f"{where}-2026-01-01_00-00-00{suffix}"
        path.write_bytes(data)
    else:  # inside the experiment state: a trial's hex field, or an embedded CLOUDPICKLE_FALLBACK object
        path = next(run_dir.glob("experiment_state-*.json"))
        if where == "trial field":
            trial = {"status": "PENDING", "placement_group_factory": data.hex()}
        else:
            trial = {"status": "PENDING", "stopping_criterion": {"_type": "CLOUDPICKLE_FALLBACK", "value": data.hex()}}
        path.write_text(json.dumps({"runner_data": {}, "trial_data": [[json.dumps(trial), "{}"]]}))
    return path


PLACES = ["tuner.pkl", "basic-variant-state", "search_gen_state", "searcher-state", "callback-states",
          "trial field", "embedded object"]  # fmt: skip


@pytest.mark.parametrize("where", PLACES)
@pytest.mark.parametrize("name", sorted(payloads(Path("/x"))))
def test_resume_refuses_every_payload_in_every_state_file(tmp_path, where, name, no_ray):
    marker = tmp_path / "PWNED"
    run_dir = _run_folder(tmp_path / "run")
    path = _place(run_dir, where, payloads(marker)[name])
    code, err = call(["resume", str(run_dir)])
    assert code == 2, err
    assert path.name in err and "Traceback" not in err, err
    assert "code until proven otherwise" in err and "dnr-sweep report" in err, err
    assert not marker.exists()


def test_an_older_hostile_experiment_state_is_refused_too(tmp_path, no_ray):
    run_dir = _run_folder(tmp_path / "run")
    older = run_dir / "experiment_state-2025-01-01_00-00-00.json"
    blob = {"_type": "CLOUDPICKLE_FALLBACK", "value": payloads(tmp_path / "PWNED")["functools.partial"].hex()}
    older.write_text(json.dumps({"runner_data": {"x": blob}, "trial_data": []}))
    code, err = call(["resume", str(run_dir)])
    assert code == 2 and older.name in err and "embedded pickle" in err, err


def test_a_clean_folder_passes_the_check(tmp_path):
    from dnr_sweep.sweep.restore import check_restorable

    check_restorable(_run_folder(tmp_path / "run"))


@pytest.mark.slow
def test_the_state_a_real_sweep_writes_passes_the_allowlist(ray_session, tmp_path):
    """Tune's own files (a grid searcher, whose state ships argparse's identity by value, and Optuna's
    study) pass, and so does their experiment state read complete against its schema with the sweep's sampled
    values; if a Ray or Optuna upgrade writes something new, this names it."""
    import yaml

    from dnr_sweep import cli
    from dnr_sweep.foundation import storage
    from dnr_sweep.sweep.restore import check_restorable
    from dnr_sweep.sweep.run_folder import load_run_dir_config
    from tests.test_sweep import BASE

    config = {**BASE, "train": {**BASE["train"], "epochs": 1},
              "search": {"dnr.density": {"uniform": [0.1, 0.5]}, "train.seed": {"randint": [0, 3]}},
              "tune": {**BASE["tune"], "num_samples": 2, "search_alg": {"optuna": {"sampler": "tpe", "seed": 0}}}}  # fmt: skip
    grid = {**BASE, "train": {**BASE["train"], "epochs": 1}, "search": {"dnr.density": {"grid": [0.1, 0.3]}}}
    for name, data in (("optuna", config), ("grid", grid)):
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        argv = ["run", str(path), "--storage", str(tmp_path / "runs"), "--name", name, "--no-dashboard", "--no-report"]
        assert cli.main(argv) == 0
        run_dir = tmp_path / "runs" / name
        assert tune_state.state_files(run_dir), "Tune wrote no pickled state: the check would check nothing"
        check_restorable(run_dir, load_run_dir_config(storage.locate(str(run_dir))))
