"""The outside world failing, as matrices over commands and failure points (issue 27): a full disk at every
write of ``train`` and ``report``, a symbolic-link loop given to every path argument, a damaged image in an
image-folder data set. Each ends in one message naming the file and the fix, exit code 2, no traceback, and
leaves nothing that blocks the next command.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
import torch

from dnr_sweep.foundation import files
from dnr_sweep.foundation import run_contract as rc
from tests.synthetic_runs import write_synthetic_run
from tests.test_hostile import call, write_yaml

#: the cheapest run train takes: 2 epochs of 8x8 synthetic images
TINY_RUN = {
    "data": {"dataset": "synthetic", "image_size": 8, "val_size": 16},
    "model": {"arch": "smallcnn", "width": 0.25},
    "train": {"epochs": 2, "batch_size": 64, "lr": 0.05, "lr_milestones": [], "warmup_epochs": 0, "device": "cpu"},
    "dnr": {"density": 0.5},
    "attack": {"train": {"eps": 0.1, "alpha": 0.05, "steps": 1},
               "eval": {"fgsm": {"eps": 0.1}, "pgd": {"eps": 0.1, "alpha": 0.05, "steps": 1}}},
}  # fmt: skip


class DiskFull:
    """``files.write_file`` (every result file's one writer) with the disk filling up at its ``at``-th call:
    that write gets a few bytes out, then the OS says ENOSPC, as a real full disk does."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, at: int | None) -> None:
        self.at, self.paths, self._real = at, [], files.write_file
        monkeypatch.setattr(files, "write_file", self)

    def __call__(self, path, write, **options):  # noqa: ANN001, ANN003, ANN204
        self.paths.append(Path(path))
        if len(self.paths) != self.at:
            return self._real(path, write, **options)

        def full(handle) -> None:  # noqa: ANN001
            handle.write(b"half a file")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        return self._real(path, full, **options)


def _assert_one_message(code: int | str, err: str, *fragments: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)


def _no_temporaries(folder: Path) -> None:
    assert not [p for p in folder.rglob("*.tmp")], list(folder.rglob("*"))


# ------------------------------------------------------------------------------------------------
# A full disk: train


def _train_writes(tmp_path: Path) -> list[Path]:
    """The files a good train writes, in order (one entry per write): the failure points of the matrix."""
    config = write_yaml(tmp_path / "c.yaml", TINY_RUN)
    with pytest.MonkeyPatch.context() as patch:
        spy = DiskFull(patch, at=None)
        code, err = call(["train", str(config), "--out", str(tmp_path / "count")])
    assert code == 0, err
    return spy.paths


def test_a_full_disk_at_any_write_of_train_is_one_message_and_blocks_nothing(tmp_path):
    """Every write of a train in turn fails (the matrix is as long as today's train writes files)."""
    writes = _train_writes(tmp_path)
    assert len(writes) >= 6, writes  # config, per epoch: weights, checkpoint, table; the final files
    for at in range(1, len(writes) + 1):
        config = write_yaml(tmp_path / "c.yaml", TINY_RUN)
        out = tmp_path / f"out{at}"
        with pytest.MonkeyPatch.context() as patch:
            disk = DiskFull(patch, at=at)
            code, err = call(["train", str(config), "--out", str(out)])
        failed = disk.paths[at - 1]
        assert failed.name == writes[at - 1].name
        _assert_one_message(code, err, str(failed), "no space left", "ENOSPC")
        started = (out / rc.CHECKPOINT_FILE).is_file()
        assert ("--resume" in err) == started, (at, err)
        if out.exists():
            _no_temporaries(out)
        if not started:  # nothing resumable: train left --out as it found it (absent)
            assert not out.exists() or [p.name for p in out.iterdir()] in ([], [rc.LOCK_FILE]), list(out.iterdir())
        # the next train goes on: --resume after a checkpoint, a plain train into the same --out before one
        code, err = call(["train", str(config), "--out", str(out), *(["--resume"] if started else [])])
        assert code == 0, (at, err)
        assert (out / rc.METRICS_FILE).is_file() and (out / rc.MODEL_FILE).is_file()


def test_a_full_disk_outside_the_atomic_writer_is_one_message_too(tmp_path, monkeypatch):
    """The backstop in cli.main: an ENOSPC raised by any other write (a library's own) is no traceback."""
    from dnr_sweep.training import single_run

    def full(*_, **__):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "out" / "somewhere"))

    monkeypatch.setattr(single_run, "write_csv", full)
    config = write_yaml(tmp_path / "c.yaml", TINY_RUN)
    code, err = call(["train", str(config), "--out", str(tmp_path / "out")])
    _assert_one_message(code, err, "somewhere", "no space left")


@pytest.mark.parametrize("number", [errno.EDQUOT, errno.EROFS, errno.EIO])
def test_every_refusal_of_the_filesystem_names_its_kind(tmp_path, monkeypatch, number):
    def refused(handle):  # noqa: ANN001, ANN202
        raise OSError(number, os.strerror(number))

    real = files.write_file
    monkeypatch.setattr(files, "write_file", lambda path, write, **options: real(path, refused, **options))
    config = write_yaml(tmp_path / "c.yaml", TINY_RUN)
    code, err = call(["train", str(config), "--out", str(tmp_path / "out")])
    _assert_one_message(code, err, rc.CONFIG_FILE, errno.errorcode[number])


def test_torch_save_on_a_full_disk_is_the_storage_message_not_torchs_runtime_error(tmp_path, monkeypatch):
    """torch's writer turns the file's ENOSPC into its own RuntimeError ("unexpected pos ..."), the OSError
    only its context: a real full disk under torch.save, the handle's write refusing after 4 KiB."""
    from dnr_sweep.artifacts import checkpoint

    class FullHandle:
        def __init__(self, handle):  # noqa: ANN001
            self.handle, self.written = handle, 0

        def write(self, data):  # noqa: ANN001, ANN202
            self.written += len(data)
            if self.written > 4096:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return self.handle.write(data)

        def __getattr__(self, name):  # noqa: ANN001, ANN204
            return getattr(self.handle, name)

        def __enter__(self):  # noqa: ANN204
            return self

        def __exit__(self, *exc):  # noqa: ANN002, ANN204
            self.handle.close()

    real_fdopen = os.fdopen
    monkeypatch.setattr(files.os, "fdopen", lambda *a, **k: FullHandle(real_fdopen(*a, **k)))
    from dnr_sweep.foundation.errors import StorageError

    with pytest.raises(StorageError, match=r"state\.pt: cannot write it: no space left on the device"):
        checkpoint.save({"w": torch.randn(10_000)}, tmp_path / "state.pt")
    assert list(tmp_path.iterdir()) == []  # no temporary file left behind


@pytest.mark.parametrize("number", [errno.ENOENT, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC])
@pytest.mark.parametrize("command", ["report", "data fetch"])
def test_an_output_folder_the_filesystem_will_not_create_is_one_message(tmp_path, monkeypatch, command, number):
    """What os.access cannot tell before: /proc takes no new folder (ENOENT, even for root), an ACL or a
    read-only mount refuses it. Only the mkdir tells, and it is one message naming the flag."""
    refused = tmp_path / "refused"
    real = os.mkdir

    def mkdir(path, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        if os.fspath(path) in (refused.name, str(refused)) or refused in Path(path).parents:
            raise OSError(number, os.strerror(number), str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", mkdir)
    if command == "report":
        argv = ["report", str(write_synthetic_run(tmp_path / "run")), "--out", str(refused / "figures")]
    else:
        argv = ["data", "fetch", "cifar10", "--root", str(refused), "--mirror", str(tmp_path / "mirror")]
    code, err = call(argv)
    flag = "--out" if command == "report" else "data.root"
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert (flag in err or errno.errorcode[number] in err) and str(refused) in err, err
    assert not refused.exists()


# ------------------------------------------------------------------------------------------------
# A full disk: report


def test_a_full_disk_at_any_write_of_report_is_one_message_and_the_next_report_works(tmp_path):
    run_dir = write_synthetic_run(tmp_path / "run")
    inputs = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    with pytest.MonkeyPatch.context() as patch:
        spy = DiskFull(patch, at=None)
        assert call(["report", str(run_dir), "--out", str(tmp_path / "count")])[0] == 0
    assert len(spy.paths) >= 3, spy.paths
    for at in range(1, len(spy.paths) + 1):
        with pytest.MonkeyPatch.context() as patch:
            disk = DiskFull(patch, at=at)
            code, err = call(["report", str(run_dir)])
        _assert_one_message(code, err, str(disk.paths[at - 1]), "no space left")
        _no_temporaries(run_dir)
        assert all(p.read_bytes() == data for p, data in inputs.items())  # the run's own files are untouched
    code, err = call(["report", str(run_dir)])
    assert code == 0, err
    assert (run_dir / "report" / "index.html").is_file()


# ------------------------------------------------------------------------------------------------
# A symbolic-link loop given to any path argument


def _loop(tmp_path: Path) -> Path:
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    return tmp_path / "a"


COMMANDS_WITH_PATHS = {
    "report RUN_DIR": lambda loop, tmp: ["report", str(loop)],
    "report --out": lambda loop, tmp: ["report", str(write_synthetic_run(tmp / "run")), "--out", str(loop)],
    "status RUN_DIR": lambda loop, tmp: ["status", str(loop)],
    "resume RUN_DIR": lambda loop, tmp: ["resume", str(loop)],
    "evaluate MODEL": lambda loop, tmp: ["evaluate", str(loop)],
    "export MODEL": lambda loop, tmp: ["export", str(loop), "--out", str(tmp / "m.pt2")],
    "export --out": lambda loop, tmp: ["export", str(tmp / "model"), "--out", str(loop)],
    "train CONFIG": lambda loop, tmp: ["train", str(loop), "--out", str(tmp / "out")],
    "train --out": lambda loop, tmp: ["train", str(write_yaml(tmp / "c.yaml", TINY_RUN)), "--out", str(loop)],
    "run --storage": lambda loop, tmp: ["run", str(write_yaml(tmp / "c.yaml", TINY_RUN)), "--storage", str(loop)],
    "validate CONFIG": lambda loop, tmp: ["validate", str(loop)],
    "data check --root": lambda loop, tmp: ["data", "check", "digits", "--root", str(loop)],
}


@pytest.mark.parametrize("below", [False, True], ids=["the-link", "below-it"])
@pytest.mark.parametrize("command", sorted(COMMANDS_WITH_PATHS))
def test_a_symlink_loop_given_to_any_path_argument_is_one_message(tmp_path, command, below):
    loop = _loop(tmp_path)
    target = loop / "sub" if below else loop
    code, err = call(COMMANDS_WITH_PATHS[command](target, tmp_path))
    _assert_one_message(code, err, str(target), "symbolic-link loop")


# ------------------------------------------------------------------------------------------------
# A damaged image in an image-folder data set (decoded lazily, so it surfaces during training)


def _tiny_imagenet(root: Path, damage: bytes | None) -> tuple[Path, Path]:
    from PIL import Image

    folder = root / "tiny-imagenet-200"
    images = folder / "train" / "n01" / "images"
    images.mkdir(parents=True)
    (folder / "wnids.txt").write_text("n01\n")
    Image.new("RGB", (64, 64), (200, 10, 10)).save(images / "n01_0.JPEG")
    good = (images / "n01_0.JPEG").read_bytes()
    bad = images / "n01_1.JPEG"
    bad.write_bytes(good[: len(good) // 3] if damage is None else damage)
    return folder, bad


DAMAGE = {"truncated": None, "random bytes": bytes(range(256)) * 4, "empty": b"", "png posing as jpeg": b"\x89PNG\r\n"}


@pytest.mark.parametrize("workers", [0, 1])
@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_image_is_named_with_the_fix(tmp_path, damage, workers):
    from dnr_sweep.data.images import ImageDecodeError
    from dnr_sweep.data.loaders import TinyImageNetFolder
    from dnr_sweep.foundation.errors import InputFileError

    folder, bad = _tiny_imagenet(tmp_path, DAMAGE[damage])
    dataset = TinyImageNetFolder(folder, "train")
    assert dataset[0][0].size == (64, 64)  # the intact one decodes

    loader = torch.utils.data.DataLoader(dataset, batch_size=2, num_workers=workers, collate_fn=lambda b: b)
    with pytest.raises(ImageDecodeError) as caught:
        list(loader)
    message = str(caught.value)
    assert isinstance(caught.value, InputFileError)
    assert str(bad) in message and "dnr-sweep data fetch" in message and str(folder) in message, message
    assert "Traceback" not in message and len(message.splitlines()) == 1, message


@pytest.mark.parametrize("epoch", [1, 2])
def test_ctrl_c_in_train_keeps_what_resumes_and_nothing_else(tmp_path, monkeypatch, epoch):
    """Before the first checkpoint nothing can be resumed, so nothing blocks the next train; after it, the
    message's --resume line continues."""
    from dnr_sweep.training.engine import TrainingRun

    real = TrainingRun.train_epoch

    def interrupted(self, *args, **kwargs):  # noqa: ANN001, ANN202
        if self.epoch + 1 == epoch:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    config = write_yaml(tmp_path / "c.yaml", TINY_RUN)
    out = tmp_path / "out"
    monkeypatch.setattr(TrainingRun, "train_epoch", interrupted)
    code, err = call(["train", str(config), "--out", str(out)])
    assert code == 130 and "Traceback" not in err, err
    assert ("--resume" in err) == (epoch == 2), err
    monkeypatch.undo()
    code, err = call(["train", str(config), "--out", str(out), *(["--resume"] if epoch == 2 else [])])
    assert code == 0, err
