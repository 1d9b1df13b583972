"""What Ray Tune 2.60 unpickles when ``dnr-sweep resume`` restores a run folder, and the allowlist every
one of those pickles must pass first (:mod:`dnr_sweep.foundation.pickle_screen`).

``Tuner.restore`` calls ``cloudpickle.loads`` on files anyone who could write the folder chose, so
before Ray starts every pickle Tune would load is screened (``tuner.pkl``, the hex pickles inside
``experiment_state-*.json``, ``basic-variant-state-*.json`` and ``search_gen_state-*.json``,
``searcher-state-*.pkl``, ``callback-states-*.pkl``); one that imports, calls or builds anything
outside :data:`TUNE_STATE_POLICY` refuses the whole folder. Not screened, since resume never loads
them: a trial's ``error.pkl`` and the checkpoints (``torch.load(weights_only=True)``).

The allowlist was collected from the state real sweeps write; ``tests/test_tune_state.py`` re-collects
it and fails when Tune writes something new. The rule: docs/RELIABILITY_AND_SECURITY.md, "Security".
"""

from __future__ import annotations

import argparse
import fnmatch
from collections.abc import Iterator
from functools import cache
from typing import Any

from dnr_sweep.foundation import reader, storage
from dnr_sweep.foundation.pickle_screen import PicklePolicy, PickleRefused, screen

TUNER_FILE = "tuner.pkl"  # Ray Tune's (Tuner.restore reads it)
#: the other state files Tune unpickles on a restore (the newest of each pattern is loaded)
PICKLED_STATE_GLOBS = ("basic-variant-state-*.json", "search_gen_state-*.json", "searcher-state-*.pkl",
                       "callback-states-*.pkl")  # fmt: skip
#: the fields of a trial's JSON state that Tune unpickles from hex (``Trial._nonjson_fields``)
TRIAL_PICKLED_FIELDS = ("results", "extra_arg", "placement_group_factory", "_resources",
                        "_default_placement_group_factory")  # fmt: skip
CLOUDPICKLE_IN_JSON = "CLOUDPICKLE_FALLBACK"  # Tune's marker of a pickle embedded (as hex) in its JSON state


def _names(module: str, *names: str) -> set[tuple[str, str]]:
    return {(module, name) for name in names}


#: called with arguments from the file: enums, NumPy's and datetime's reconstructors, filesystems by URI
_CALLABLES = {
    *_names("collections", "deque", "OrderedDict"), *_names("datetime", "datetime", "date", "timedelta"),
    *_names("re", "_compile"),
    *_names("numpy", "dtype"), *_names("numpy._core.multiarray", "_reconstruct", "scalar"),
    *_names("numpy.core.multiarray", "_reconstruct", "scalar"), *_names("numpy._core.numeric", "_frombuffer"),
    *_names("numpy.core.numeric", "_frombuffer"),
    *_names("numpy.random._pickle", "__bit_generator_ctor", "__randomstate_ctor", "__generator_ctor"),
    *_names("optuna.study._study_direction", "StudyDirection"), *_names("optuna.trial._state", "TrialState"),
    *_names("pyarrow._fs", "FileSystem._from_uri"), *_names("ray.air._internal.usage", "AirEntrypoint"),
    # the run folder's filesystem when storage is a URI (a client built from options; it runs no code)
    *_names("pyarrow._s3fs", "S3FileSystem._reconstruct"), *_names("pyarrow._gcsfs", "GcsFileSystem._reconstruct"),
}  # fmt: skip

#: instantiated without __init__ (NEWOBJ), then their state set: data classes of Tune, Optuna, argparse
_CLASSES = {
    *_names("argparse", "ArgumentParser", "_ArgumentGroup", "_MutuallyExclusiveGroup", "_HelpAction",
            "_StoreAction", "_StoreTrueAction", "_StoreFalseAction", "_StoreConstAction", "_AppendAction",
            "_AppendConstAction", "_CountAction", "_ExtendAction", "_VersionAction", "_SubParsersAction",
            "Namespace"),
    *_names("uuid", "UUID"), *_names("numpy", "ndarray"),
    *_names("numpy.random._mt19937", "MT19937"), *_names("numpy.random._pcg64", "PCG64"),
    *_names("optuna.distributions", "CategoricalDistribution", "FloatDistribution", "IntDistribution"),
    *_names("optuna.pruners._nop", "NopPruner"), *_names("optuna.samplers._lazy_random_state", "LazyRandomState"),
    *_names("optuna.samplers._random", "RandomSampler"), *_names("optuna.samplers._tpe.sampler", "TPESampler"),
    *_names("optuna.samplers._gp.sampler", "GPSampler"),
    *_names("optuna.samplers._tpe.parzen_estimator", "_ParzenEstimator", "_ParzenEstimatorParameters"),
    *_names("optuna.search_space.intersection", "IntersectionSearchSpace"),
    *_names("optuna.storages._in_memory", "InMemoryStorage", "_StudyInfo"), *_names("optuna.study.study", "Study"),
    *_names("optuna.trial._frozen", "FrozenTrial"), *_names("optuna.trial._trial", "Trial"),
    *_names("ray.train", "SyncConfig"), *_names("ray.train._internal.checkpoint_manager", "_CheckpointManager"),
    *_names("ray.train._internal.session", "_TrainingResult"),
    *_names("ray.train._internal.storage", "StorageContext", "_FilesystemSyncer"),
    *_names("ray.tune", "Checkpoint", "CheckpointConfig", "FailureConfig", "RunConfig"),
    *_names("ray.tune.execution.placement_groups", "PlacementGroupFactory"),
    *_names("ray.tune.experiment.experiment", "Experiment"), *_names("ray.tune.logger.json", "JsonLoggerCallback"),
    *_names("ray.tune.logger.csv", "CSVLoggerCallback"), *_names("ray.tune.progress_reporter", "CLIReporter"),
    *_names("ray.tune.schedulers.async_hyperband", "AsyncHyperBandScheduler", "_Bracket"),
    *_names("ray.tune.search.basic_variant", "_TrialIterator", "_VariantIterator", "BasicVariantGenerator"),
    *_names("ray.tune.search.optuna.optuna_search", "OptunaSearch"),
    *_names("ray.tune.search.search_generator", "SearchGenerator"),
    *_names("ray.tune.search.concurrency_limiter", "ConcurrencyLimiter"),
    *_names("ray.tune.search.sample", "Categorical", "Categorical._Uniform", "Float", "Float._Uniform",
            "Float._LogUniform", "Integer", "Integer._Uniform", "Integer._LogUniform", "Quantized",
            "_BackwardsCompatibleNumpyRng"),
    *_names("ray.tune.stopper.noop", "NoopStopper"), *_names("ray.tune.tune_config", "TuneConfig"),
    *_names("dnr_sweep.foundation.storage", "Location"), *_names("dnr_sweep.sweep.live", "LiveReport"),
    *_names("dnr_sweep.sweep.grouped_asha", "GroupedASHAScheduler"),
    *_names("pyarrow._fs", "LocalFileSystem"),
}  # fmt: skip

#: stored as values only, never called by the pickle: types and functions held in attributes
_REFERENCES = {
    *_names("builtins", "int", "str", "float", "bool", "object", "list", "dict", "tuple"),
    *_names("argparse", "HelpFormatter"), *_names("json", "loads"), *_names("time", "monotonic", "time"),
    *_names("optuna.samplers._tpe.sampler", "default_weights", "default_gamma", "hyperopt_default_gamma"),
    *_names("ray.tune.resources", "json_to_resources"), *_names("optuna._gp.prior", "default_log_prior"),
    *_names("ray.train._internal.storage", "_upload_to_fs_path"),
}  # fmt: skip


@cache
def _known_code() -> list[tuple]:
    """The fields (as cloudpickle passes them to ``types.CodeType``) of the one function Tune's state
    ships by value: argparse's ``identity``, from this Python's own argparse."""
    from ray.cloudpickle import cloudpickle  # lazy: Ray takes seconds to import; resume screens before Ray starts

    identity = argparse.ArgumentParser()._registries["type"][None]
    return [cloudpickle._code_reduce(identity.__code__)[1]]


def _code_allowed(fields: tuple) -> bool:
    """Exactly a known code object; only ``co_filename`` (where the writer's Python lives) may differ."""
    for known in _known_code():
        if len(fields) == len(known) and all(
            got == want or (isinstance(got, str) and want.endswith("argparse.py") and got.endswith("argparse.py"))
            for got, want in zip(fields, known, strict=True)
        ):
            return True
    return False


TUNE_STATE_POLICY = PicklePolicy(callables=frozenset(_CALLABLES), classes=frozenset(_CLASSES),
                                 references=frozenset(_REFERENCES), code_allowed=_code_allowed)  # fmt: skip


def screen_tune_pickle(data: bytes) -> None:
    """Raise :class:`PickleRefused` unless ``data`` passes :data:`TUNE_STATE_POLICY`."""
    screen(data, TUNE_STATE_POLICY)


def pickles_in_json_state(state: Any) -> Iterator[tuple[str, bytes | None]]:
    """``(where, bytes)`` of every pickle Tune would load from its JSON experiment state: the embedded
    ``CLOUDPICKLE_FALLBACK`` objects and each trial's hex ``_nonjson_fields`` (``None`` for a value that
    is not hex). Trials are JSON strings inside the JSON; they are parsed too."""
    stack: list[tuple[str, Any]] = [("", state)]
    while stack:
        where, node = stack.pop()
        if isinstance(node, dict):
            if node.get("_type") == CLOUDPICKLE_IN_JSON:
                yield f"{where} (an embedded pickle)", _from_hex(node.get("value"))
                continue
            for key, value in node.items():
                if key in TRIAL_PICKLED_FIELDS and isinstance(value, str):
                    yield f"{where}.{key}", _from_hex(value)
                else:
                    stack.append((f"{where}.{key}" if where else str(key), value))
        elif isinstance(node, list):
            stack.extend((f"{where}[{i}]", item) for i, item in enumerate(node))
        elif isinstance(node, str) and (inner := reader.embedded(node)) is not None:  # a trial, as JSON text
            stack.append((where, inner))


def _from_hex(value: object) -> bytes | None:
    try:
        return bytes.fromhex(value) if isinstance(value, str) else None
    except ValueError:
        return None


def state_files(run_dir: storage.Where) -> list[str]:
    """Names of the pickled state files in ``run_dir`` that Tune loads on a restore (all of each
    pattern, not only the newest: which one Tune picks is its choice)."""
    names = storage.listdir(run_dir)
    return [name for name in names if name == TUNER_FILE or any(fnmatch.fnmatch(name, g) for g in PICKLED_STATE_GLOBS)]


def problem_of_pickle(data: bytes | None) -> str | None:
    """Why ``data`` may not be loaded (or ``None`` when it passes the allowlist)."""
    if data is None:
        return "is not hex"
    try:
        screen_tune_pickle(data)
    except PickleRefused as exc:
        return str(exc)
    return None


__all__ = ["CLOUDPICKLE_IN_JSON", "PICKLED_STATE_GLOBS", "TUNER_FILE", "TUNE_STATE_POLICY",
           "pickles_in_json_state", "problem_of_pickle", "screen_tune_pickle", "state_files"]  # fmt: skip
