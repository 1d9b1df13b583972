"""Data preparation (:mod:`dnr_sweep.data.fetch`, ``dnr-sweep data``, the prepare step of ``run``):
fetched once, verified, never by a trial; every failure one message and exit 2, before Ray.

Everything runs on 127.0.0.1: a small HTTP server (:class:`Mirror`) serves archives in the real
formats, which the tests build from the miniature data sets of ``tests/test_data.py`` (CIFAR's python
tarball with its real member names ``cifar-10-batches-py/data_batch_1`` ...; Tiny-ImageNet's zip with
the real tree, ``wnids.txt``, ``train/<wnid>/images``, ``val/images`` and ``val/val_annotations.txt``)
and counts the requests. A miniature cannot match the official MD5s, so each test hands its own in
(:func:`use_archive`: the spec's archive with the miniature's MD5s, size and URL); the shipped spec's
MD5s are checked against torchvision's own lists.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import io
import json
import socket
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
from pathlib import Path
from types import MappingProxyType

import pytest
import yaml

from dnr_sweep.data import fetch as data_fetch
from dnr_sweep.data import specs as dataset_specs
from dnr_sweep.foundation.errors import DatasetNotFoundError, InputFileError
from tests.test_data import write_cifar10, write_tinyimagenet
from tests.test_hostile import call

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _no_mirror_env(monkeypatch):
    monkeypatch.delenv(data_fetch.MIRROR_ENV, raising=False)


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


# --------------------------------------------------------------------------------------------------
# Archives in the real formats


@dataclasses.dataclass
class Built:
    """An archive the test made: its bytes and the MD5 of each file it unpacks to."""

    name: str  # data set
    data: bytes
    files: tuple[tuple[str, str], ...]

    @property
    def spec(self) -> dataset_specs.DatasetSpec:
        spec = dataset_specs.get(self.name)
        archive = dataclasses.replace(spec.archive, md5=_md5(self.data), size=len(self.data), files=self.files)
        return dataclasses.replace(spec, archive=archive)


def cifar10_archive(tmp_path: Path) -> Built:
    stage = tmp_path / "stage-cifar10"
    write_cifar10(stage)
    folder = stage / "cifar-10-batches-py"
    (folder / "readme.html").write_text("<html>miniature</html>")  # the official tarball has one too
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-py")
    files = tuple((name, _md5((folder / name).read_bytes())) for name, _ in dataset_specs.get("cifar10").archive.files)
    return Built("cifar10", buffer.getvalue(), files)


def tinyimagenet_archive(tmp_path: Path, *, drop: str | None = None) -> Built:
    stage = tmp_path / "stage-tiny"
    write_tinyimagenet(stage)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for path in sorted(stage.rglob("*")):
            rel = path.relative_to(stage).as_posix()
            if drop is None or rel != drop:
                z.write(path, rel)
    return Built("tinyimagenet", buffer.getvalue(), ())


def use_archive(monkeypatch, built: Built, *, url: str | None = None) -> dataset_specs.DatasetSpec:
    """The registry's spec of ``built.name`` with the miniature's checksums (and optionally its URL)."""
    spec = built.spec
    if url is not None:
        spec = dataclasses.replace(spec, archive=dataclasses.replace(spec.archive, url=url))
    monkeypatch.setattr(dataset_specs, "DATASETS", MappingProxyType({**dataset_specs.DATASETS, spec.name: spec}))
    return spec


# --------------------------------------------------------------------------------------------------
# The mirror


class Mirror:
    """``http://127.0.0.1:PORT/NAME`` serves ``files[NAME]``; 404 otherwise. ``requests`` lists the
    paths asked for; ``delay_s`` slows each 4 KiB chunk; ``cut`` sends only that many bytes."""

    def __init__(self, files: dict[str, bytes], *, delay_s: float = 0.0, cut: int | None = None):
        self.files, self.delay_s, self.cut, self.requests = files, delay_s, cut, []
        mirror = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                name = self.path.lstrip("/")
                mirror.requests.append(name)
                if name not in mirror.files:
                    self.send_error(404)
                    return
                data = mirror.files[name]
                body = data if mirror.cut is None else data[: mirror.cut]
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                for start in range(0, len(body), 4096):
                    self.wfile.write(body[start : start + 4096])
                    time.sleep(mirror.delay_s)

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def serve():
    mirrors: list[Mirror] = []

    def start(files: dict[str, bytes], **kwargs) -> Mirror:
        mirrors.append(Mirror(files, **kwargs))
        return mirrors[-1]

    yield start
    for mirror in mirrors:
        mirror.close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed once the socket is: a connection is refused at once


# --------------------------------------------------------------------------------------------------
# The shipped facts


def test_shipped_cifar_checksums_are_torchvisions():
    from torchvision.datasets import CIFAR10, CIFAR100

    for name, cls in (("cifar10", CIFAR10), ("cifar100", CIFAR100)):
        archive = dataset_specs.get(name).archive
        assert (archive.url, archive.filename, archive.md5, archive.folder) == (
            cls.url, cls.filename, cls.tgz_md5, cls.base_folder)  # fmt: skip
        assert dict(archive.files) == dict(cls.train_list + cls.test_list + [[cls.meta["filename"], cls.meta["md5"]]])
    tiny = dataset_specs.get("tinyimagenet").archive
    assert tiny.md5 == "90528d7ca1a48142e341f4ef8d21d0de" and tiny.url.endswith("/tiny-imagenet-200.zip")


# --------------------------------------------------------------------------------------------------
# Fetching


def test_fetch_from_a_mirror_verifies_unpacks_atomically_and_then_needs_nothing(tmp_path, monkeypatch, serve):
    built = cifar10_archive(tmp_path)
    use_archive(monkeypatch, built)
    mirror = serve({"cifar-10-python.tar.gz": built.data})
    root = tmp_path / "data"
    code, err = call(["data", "fetch", "cifar10", "--root", str(root), "--mirror", mirror.url, "--no-progress"])
    assert code == 0, err
    assert mirror.requests == ["cifar-10-python.tar.gz"]
    folder = root / "cifar-10-batches-py"
    for name, md5 in built.files:
        assert _md5((folder / name).read_bytes()) == md5
    assert (folder / data_fetch.RECORD_FILE).is_file()
    assert not list(root.glob(".*unpacking*")) and not list(root.glob("*.part-*"))  # nothing half-done left
    code, err = call(["data", "fetch", "cifar10", "--root", str(root), "--mirror", mirror.url])
    assert code == 0 and len(mirror.requests) == 1  # present: no second download
    assert call(["data", "check", "cifar10", "--root", str(root)])[0] == 0
    # the loader opens it (torchvision's own MD5 check relaxed: a miniature cannot match the real sums)
    import torchvision.datasets.cifar as tv_cifar
    from torchvision.datasets.utils import check_integrity

    from dnr_sweep.data.loaders import build_datasets

    monkeypatch.setattr(tv_cifar, "check_integrity", lambda fpath, md5=None: check_integrity(fpath, None))
    assert len(build_datasets("cifar10", root=root, val_size=5).test) == 8


def test_mirror_from_the_environment_and_from_the_config(tmp_path, monkeypatch, serve):
    built = tinyimagenet_archive(tmp_path)
    use_archive(monkeypatch, built)
    mirror = serve({"tiny-imagenet-200.zip": built.data})
    monkeypatch.setenv(data_fetch.MIRROR_ENV, mirror.url + "/")
    root = tmp_path / "env"
    assert call(["data", "fetch", "tinyimagenet", "--root", str(root), "--no-progress"])[0] == 0
    assert (root / "tiny-imagenet-200" / "val" / "val_annotations.txt").is_file()
    monkeypatch.setenv(data_fetch.MIRROR_ENV, f"http://127.0.0.1:{closed_port()}")  # the config's wins over it
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"data": {"dataset": "tinyimagenet", "root": str(tmp_path / "cfg"),
                                               "mirror": mirror.url}}))  # fmt: skip
    assert call(["data", "fetch", str(config), "--no-progress"])[0] == 0
    assert mirror.requests == ["tiny-imagenet-200.zip"] * 2
    # the tree the loader reads: val labelled by val_annotations.txt
    from dnr_sweep.data.loaders import build_datasets

    assert len(build_datasets("tinyimagenet", root=tmp_path / "cfg", val_size=0).test) == 5


def test_an_archive_put_under_the_root_is_unpacked_without_the_network(tmp_path, monkeypatch):
    built = cifar10_archive(tmp_path)
    use_archive(monkeypatch, built, url=f"http://127.0.0.1:{closed_port()}/cifar-10-python.tar.gz")
    root = tmp_path / "data"
    root.mkdir()
    (root / "cifar-10-python.tar.gz").write_bytes(built.data)
    spec = dataset_specs.get("cifar10")
    assert data_fetch.ensure(spec, root, download=False, progress=False) == "unpacked"
    assert data_fetch.ensure(spec, root, download=False, progress=False) == "present"


FETCH_IN_A_PROCESS = """
import dataclasses, json, sys
from dnr_sweep.data import fetch as data_fetch
from dnr_sweep.data import specs as dataset_specs
a = json.loads(sys.argv[1])
spec = dataset_specs.get(a["dataset"])
spec = dataclasses.replace(spec, archive=dataclasses.replace(spec.archive, md5=a["md5"], size=a["size"],
                                                             files=tuple(map(tuple, a["files"]))))
print(data_fetch.ensure(spec, a["root"], mirror=a["mirror"], progress=False))
"""


def test_two_concurrent_fetches_make_one_download_and_one_waiter(tmp_path, serve):
    built = cifar10_archive(tmp_path)
    mirror = serve({"cifar-10-python.tar.gz": built.data}, delay_s=0.02)  # a download of about a second
    args = json.dumps({"dataset": "cifar10", "md5": _md5(built.data), "size": len(built.data),
                       "files": built.files, "root": str(tmp_path / "data"), "mirror": mirror.url})  # fmt: skip
    procs = [subprocess.Popen([sys.executable, "-c", FETCH_IN_A_PROCESS, args], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]  # fmt: skip
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    assert sorted(out.strip() for out, _ in results) == ["downloaded", "present"]
    assert any("waiting for it" in err for _, err in results)
    assert mirror.requests == ["cifar-10-python.tar.gz"]


# --------------------------------------------------------------------------------------------------
# When the data cannot be had: one message, exit 2, seconds, before Ray, not retried


def _assert_ways_out(err: str, dataset: str, root: Path, url: str) -> None:
    for fragment in (f"{dataset} not found under {root}", url, "not retried", "Three ways out",
                     f"put the archive at {root}", "point data.root at", "data.mirror", data_fetch.MIRROR_ENV):  # fmt: skip
        assert fragment in err, (fragment, err)
    assert "Traceback" not in err


@pytest.mark.needs_tune  # `run` is Ray Tune's command
def test_closed_port_ends_the_headline_command_in_seconds_before_ray(tmp_path, monkeypatch, no_ray):
    root = tmp_path / "nodata"
    mirror = f"http://127.0.0.1:{closed_port()}"
    start = time.monotonic()
    code, err = call(["run", str(REPO / "search_spaces" / "cifar100_resnet18.yaml"), "--storage", str(tmp_path / "r"),
                      "--set", f"data.root={root}", "--set", f"data.mirror={mirror}", "--set", "train.epochs=4",
                      "--set", "tune.resources_per_trial.gpu=0", "--set", "tune.resources_per_trial.cpu=1"])  # fmt: skip
    assert time.monotonic() - start < 15
    assert code == 2, err
    _assert_ways_out(err, "cifar100", root, f"{mirror}/cifar-100-python.tar.gz")
    assert "Connection refused" in err
    assert "warning:" in err and "lr_milestones" in err  # the shortened paper config runs, with a warning
    assert not (tmp_path / "r").exists()


def test_http_404_is_one_message_and_one_request(tmp_path, monkeypatch, serve, no_ray):
    mirror = serve({})
    root = tmp_path / "data"
    code, err = call(["data", "fetch", "tinyimagenet", "--root", str(root), "--mirror", mirror.url])
    assert code == 2
    _assert_ways_out(err, "tinyimagenet", root, f"{mirror.url}/tiny-imagenet-200.zip")
    assert "HTTP 404" in err and mirror.requests == ["tiny-imagenet-200.zip"]
    assert not (root / "tiny-imagenet-200").exists()


@pytest.mark.needs_tune  # `run` is Ray Tune's command
def test_download_off_and_data_missing_names_the_ways_out_without_a_request(tmp_path, monkeypatch, serve, no_ray):
    mirror = serve({})
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"data": {"dataset": "cifar10", "root": str(tmp_path / "d"), "download": False,
                                               "mirror": mirror.url, "val_size": 5000}}))  # fmt: skip
    code, err = call(["run", str(config), "--storage", str(tmp_path / "r")])
    assert code == 2 and "data.download is false" in err and "dnr-sweep data fetch cifar10" in err, err
    assert mirror.requests == []


def test_a_bad_mirror_value_is_refused_naming_where_it_came_from(tmp_path, monkeypatch):
    code, err = call(["data", "fetch", "cifar10", "--root", str(tmp_path), "--mirror", "ftp://host/x"])
    assert code == 2 and "--mirror" in err and "ftp://" in err
    monkeypatch.setenv(data_fetch.MIRROR_ENV, "gopher://x")
    code, err = call(["data", "fetch", "cifar10", "--root", str(tmp_path)])
    assert code == 2 and data_fetch.MIRROR_ENV in err
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"data": {"dataset": "cifar10", "mirror": "ssh://x"}}))
    code, err = call(["validate", str(config)])
    assert code == 2 and "data.mirror" in err


# --------------------------------------------------------------------------------------------------
# Corrupt or partial data: named with the file and the fix


def test_truncated_download_is_refused_and_nothing_is_kept(tmp_path, monkeypatch, serve):
    built = cifar10_archive(tmp_path)
    use_archive(monkeypatch, built)
    mirror = serve({"cifar-10-python.tar.gz": built.data}, cut=len(built.data) // 2)
    root = tmp_path / "data"
    code, err = call(["data", "fetch", "cifar10", "--root", str(root), "--mirror", mirror.url, "--no-progress"])
    assert code == 2 and "truncated" in err and "cifar-10-python.tar.gz" in err and built.spec.archive.md5 in err
    assert sorted(p.name for p in root.iterdir()) == [".cifar-10-batches-py.lock"]  # no partial file, no folder


def test_truncated_archive_under_the_root_is_named_never_deleted(tmp_path, monkeypatch):
    built = cifar10_archive(tmp_path)
    use_archive(monkeypatch, built)
    root = tmp_path / "data"
    root.mkdir()
    archive = root / "cifar-10-python.tar.gz"
    archive.write_bytes(built.data[:1000])
    code, err = call(["data", "fetch", "cifar10", "--root", str(root)])
    assert code == 2 and str(archive) in err and "truncated" in err and "delete it" in err
    assert archive.stat().st_size == 1000 and not (root / "cifar-10-batches-py").exists()


@pytest.mark.needs_tune  # `run` is Ray Tune's command
def test_corrupted_or_partial_extraction_is_named_by_check_and_by_run(tmp_path, monkeypatch, serve, no_ray):
    built = cifar10_archive(tmp_path)
    use_archive(monkeypatch, built)
    mirror = serve({"cifar-10-python.tar.gz": built.data})
    root = tmp_path / "data"
    assert call(["data", "fetch", "cifar10", "--root", str(root), "--mirror", mirror.url, "--no-progress"])[0] == 0
    batch = root / "cifar-10-batches-py" / "data_batch_2"
    original = batch.read_bytes()
    data = bytearray(original)
    data[100] ^= 0xFF  # same size: only the MD5 can tell
    batch.write_bytes(bytes(data))
    code, err = call(["data", "check", "cifar10", "--root", str(root)])
    assert code == 2 and str(batch) in err and "has MD5" in err and "dnr-sweep data fetch cifar10" in err
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"data": {"dataset": "cifar10", "root": str(root), "download": True,
                                               "val_size": 5000}}))  # fmt: skip
    code, err = call(["run", str(config), "--storage", str(tmp_path / "r")])  # its record no longer matches
    assert code == 2 and str(batch) in err, err
    batch.write_bytes(original)
    (root / "cifar-10-batches-py" / "test_batch").unlink()  # a half-unpacked folder
    code, err = call(["run", str(config), "--storage", str(tmp_path / "r")])
    assert code == 2 and "test_batch" in err and "is missing" in err
    assert batch.is_file() and len(mirror.requests) == 1  # nothing deleted, nothing downloaded again


def test_a_trial_sees_a_file_changed_since_verification(tmp_path, monkeypatch, serve):
    built = cifar10_archive(tmp_path)
    spec = use_archive(monkeypatch, built)
    mirror = serve({"cifar-10-python.tar.gz": built.data})
    root = tmp_path / "data"
    data_fetch.ensure(spec, root, mirror=mirror.url, progress=False)
    data_fetch.check_present(spec, root)
    batch = root / "cifar-10-batches-py" / "test_batch"
    batch.write_bytes(batch.read_bytes()[:-10])
    with pytest.raises(InputFileError, match="test_batch.*since it was verified"):
        data_fetch.check_present(spec, root)


def test_wrong_things_in_the_root_are_named(tmp_path, monkeypatch):
    built = cifar10_archive(tmp_path)
    use_archive(monkeypatch, built)
    root = tmp_path / "data"
    root.mkdir()
    (root / "cifar-10-batches-py").write_text("not a folder")
    code, err = call(["data", "fetch", "cifar10", "--root", str(root)])
    assert code == 2 and str(root / "cifar-10-batches-py") in err and "is a file" in err
    (root / "cifar-10-batches-py").unlink()
    (root / "cifar-10-python.tar.gz").write_bytes(tinyimagenet_archive(tmp_path).data)  # another data set's archive
    code, err = call(["data", "fetch", "cifar10", "--root", str(root)])
    assert code == 2 and str(root / "cifar-10-python.tar.gz") in err and "MD5" in err


def test_tinyimagenet_without_its_val_annotations_is_refused(tmp_path, monkeypatch, serve):
    built = tinyimagenet_archive(tmp_path, drop="tiny-imagenet-200/val/val_annotations.txt")
    use_archive(monkeypatch, built)
    mirror = serve({"tiny-imagenet-200.zip": built.data})
    root = tmp_path / "data"
    code, err = call(["data", "fetch", "tinyimagenet", "--root", str(root), "--mirror", mirror.url, "--no-progress"])
    assert code == 2 and "val_annotations.txt" in err and "is missing" in err, err
    assert not (root / "tiny-imagenet-200").exists()  # verified before it was renamed into place


def test_tinyimagenet_annotation_naming_a_missing_image_is_named(tmp_path, monkeypatch, serve):
    built = tinyimagenet_archive(tmp_path, drop="tiny-imagenet-200/val/images/val_2.JPEG")
    use_archive(monkeypatch, built)
    mirror = serve({"tiny-imagenet-200.zip": built.data})
    with pytest.raises(InputFileError, match="val_2.JPEG"):
        data_fetch.ensure(dataset_specs.get("tinyimagenet"), tmp_path / "d", mirror=mirror.url, progress=False)


def test_missing_data_in_a_trial_says_trials_never_download(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="Trials never download"):
        data_fetch.check_present(dataset_specs.get("cifar100"), tmp_path)


# --------------------------------------------------------------------------------------------------
# Sweeps: the driver fetches once, trials make no request; on a cluster, one task per node


def test_sweep_fetches_once_on_the_driver_and_trials_make_no_request(ray_session, tmp_path, monkeypatch, serve):
    from dnr_sweep import cli
    from tests.test_sweep import BASE

    built = tinyimagenet_archive(tmp_path)
    use_archive(monkeypatch, built)
    mirror = serve({"tiny-imagenet-200.zip": built.data})
    data = {"dataset": "tinyimagenet", "root": str(tmp_path / "data"), "download": True, "mirror": mirror.url,
            "val_size": 2}  # fmt: skip
    config = tmp_path / "sweep.yaml"
    config.write_text(yaml.safe_dump({**BASE, "data": data, "train": {**BASE["train"], "epochs": 1, "batch_size": 7},
                                      "search": {"dnr.density": {"grid": [0.2, 0.5]}}}))  # fmt: skip
    code = cli.main(["run", str(config), "--storage", str(tmp_path / "runs"), "--name", "t", "--no-dashboard",
                     "--no-report"])  # fmt: skip
    assert code == 0
    assert mirror.requests == ["tiny-imagenet-200.zip"]  # the driver's one download; two trials, no request
    assert len(list((tmp_path / "runs" / "t").glob("*/model.pt"))) == 2


def test_prepare_nodes_runs_on_every_node_and_reports_failures(ray_session, tmp_path, monkeypatch, serve):
    from dnr_sweep.config import DataConfig
    from dnr_sweep.foundation.errors import ClusterError
    from dnr_sweep.sweep.data_nodes import prepare_nodes

    built = tinyimagenet_archive(tmp_path)
    use_archive(monkeypatch, built)
    mirror = serve({"tiny-imagenet-200.zip": built.data})
    data = DataConfig(dataset="tinyimagenet", root=str(tmp_path / "node"), download=True, mirror=mirror.url)
    lines: list[str] = []
    assert set(prepare_nodes(data, log=lines.append).values()) == {"downloaded"}  # done by the node's task
    assert set(prepare_nodes(data, log=lines.append).values()) == {"present"}
    assert mirror.requests == ["tiny-imagenet-200.zip"] and "tinyimagenet on 1 node(s)" in lines[0]
    gone = DataConfig(dataset="tinyimagenet", root=str(tmp_path / "other"), download=True,
                      mirror=f"http://127.0.0.1:{closed_port()}")  # fmt: skip
    with pytest.raises(ClusterError, match="(?s)not on every node.*Connection refused.*Three ways out"):
        prepare_nodes(gone)


# --------------------------------------------------------------------------------------------------
# First contact: a shortened paper config runs, with one warning


def test_shortened_paper_config_validates_with_one_warning_per_problem():
    code, err = call(["validate", str(REPO / "search_spaces" / "cifar10_table2.yaml"), "--set", "train.epochs=4"])
    assert code == 0, err
    assert (
        err.count("warning:") == 2
        and err.count("train.lr_milestones: [80, 120, 160]") == 1
        and err.count("train.warmup_epochs (5)") == 1
    )
    assert "train.lr_milestones=[2, 3]" in err


# --------------------------------------------------------------------------------------------------
# A misbehaving mirror: one message, exit 2, the user's files untouched, nothing of ours left

#: what `split` makes of an archive, and a folder that looks like an unpack: the user's, never ours to delete
USERS_FILES = {"cifar-10-python.tar.gz.part-aa": b"first part", "cifar-10-python.tar.gz.part-ab": b"second part",
               "cifar-10-python.tar.gz.part-ac": b"third part",
               ".cifar-10-batches-py.unpacking-mine/notes.txt": b"mine"}  # fmt: skip


def _users_files(root: Path) -> None:
    for name, data in USERS_FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)


def _only_the_users_files_and_the_lock(root: Path) -> None:
    found = {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    assert found == {**USERS_FILES, ".cifar-10-batches-py.lock": found.get(".cifar-10-batches-py.lock", b"")}
    assert {p.name for p in root.iterdir()} == {*(n.split("/")[0] for n in USERS_FILES), ".cifar-10-batches-py.lock"}


def _misbehaving(data: bytes) -> dict[str, tuple[object, str]]:
    """scenario -> (the mirror's script, a fragment of the one message)."""
    from tests import test_http_client as peers

    return {
        "HTTP 500": (peers.answer("500 Internal Server Error", b"<h1>oops</h1>"), "HTTP 500 Internal Server Error"),
        "drip-feed": (peers.drip(data, every_s=0.2), "was cut off: no complete answer within 1.5 s"),
        "stalled header": (peers.stalled, "was cut off: no complete answer within 1.5 s"),
        "endless body": (peers.endless(), f"longer than the {len(data):,} bytes expected"),
        "Content-Length: abc": (peers.answer(body=data, headers=[("Content-Length", "abc")]),
                                "Content-Length 'abc' is not a byte count"),
        "conflicting Content-Length": (peers.answer(body=data, headers=[("Content-Length", str(len(data))),
                                                                        ("Content-Length", "12")]),
                                       "conflicting Content-Length headers"),
        "longer than announced": (peers.longer_than_announced, "longer than the 10 bytes its Content-Length announced"),
        "announced too large": (peers.answer(body=b"", headers=[("Content-Length", str(10**12))]),
                                f"announces 1,000,000,000,000 bytes, more than the {len(data):,} expected"),
        "HTML page": (peers.answer(body=b"<html>mirror index</html>", headers=[("Content-Type", "text/html")]),
                      "served 25 bytes with MD5"),
        "redirect off this machine": (peers.redirect("http://10.255.255.1/cifar-10-python.tar.gz"),
                                      "redirects from this machine to another host"),
        "not HTTP": (lambda sock, request, stop: sock.sendall(b"SSH-2.0-OpenSSH_9.6\r\n"), "not a well-formed HTTP"),
    }  # fmt: skip


MISBEHAVIOURS = list(_misbehaving(b"").keys())


@pytest.mark.parametrize("scenario", MISBEHAVIOURS)
def test_a_misbehaving_mirror_is_one_message_and_leaves_the_users_files_alone(tmp_path, monkeypatch, scenario):
    from dnr_sweep.foundation import http
    from tests.test_http_client import Peer

    built = cifar10_archive(tmp_path)
    use_archive(monkeypatch, built)
    monkeypatch.setattr(data_fetch, "download_limits",
                        lambda archive: http.Limits(connect_s=1, total_s=1.5, max_bytes=archive.size))  # fmt: skip
    script, fragment = _misbehaving(built.data)[scenario]
    mirror = Peer(script)
    try:
        root = tmp_path / "R"
        root.mkdir()
        _users_files(root)
        code, err = call(["data", "fetch", "cifar10", "--root", str(root), "--mirror", mirror.url, "--no-progress"])
    finally:
        mirror.close()
    assert code == 2 and "Traceback" not in err, err
    assert fragment in err, err
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("cifar10: downloading ")]
    assert lines[0].startswith(("cifar10 not found under", f"{mirror.url}/cifar-10-python.tar.gz: ")), err
    assert not any(line.startswith("warning:") for line in lines)
    _only_the_users_files_and_the_lock(root)


def test_the_download_deadline_follows_the_archive_size():
    archive = dataset_specs.get("cifar10").archive
    limits = data_fetch.download_limits(archive)
    assert limits.max_bytes == archive.size and limits.connect_s == limits.idle_s == data_fetch.TIMEOUT_S
    assert limits.total_s == data_fetch.DEADLINE_BASE_S + archive.size / data_fetch.MIN_RATE  # about 44 minutes


def test_a_crashed_fetch_leaves_its_folder_and_the_next_removes_exactly_it(tmp_path, monkeypatch, serve):
    built = cifar10_archive(tmp_path)
    use_archive(monkeypatch, built)
    root = tmp_path / "R"
    root.mkdir()
    _users_files(root)
    crashed = root / ".cifar-10-batches-py.k1ll3d.dnr-sweep-fetch"  # what a killed fetch left, as its journal says
    (crashed / "unpacked").mkdir(parents=True)
    (crashed / "cifar-10-python.tar.gz").write_bytes(built.data[:100])
    journal = root / ".cifar-10-batches-py.fetching.json"
    journal.write_text(json.dumps({"made": [crashed.name]}))
    mirror = serve({})
    code, err = call(["data", "fetch", "cifar10", "--root", str(root), "--mirror", mirror.url, "--no-progress"])
    assert code == 2 and "HTTP 404" in err
    assert not crashed.exists() and not journal.exists()
    _only_the_users_files_and_the_lock(root)
    # an edited journal cannot point the clean-up at the user's files
    journal.write_text(json.dumps({"made": [".cifar-10-batches-py.unpacking-mine", "cifar-10-python.tar.gz.part-aa",
                                            "../elsewhere.dnr-sweep-fetch", str(root)]}))  # fmt: skip
    assert call(["data", "fetch", "cifar10", "--root", str(root), "--mirror", mirror.url])[0] == 2
    _only_the_users_files_and_the_lock(root)


def test_a_file_mirror_is_read_through_the_same_caps(tmp_path, monkeypatch):
    built = cifar10_archive(tmp_path)
    use_archive(monkeypatch, built)
    folder = tmp_path / "archives"
    folder.mkdir()
    (folder / "cifar-10-python.tar.gz").write_bytes(built.data + b"trailing junk")
    root = tmp_path / "R"
    code, err = call(["data", "fetch", "cifar10", "--root", str(root), "--mirror", folder.as_uri(), "--no-progress"])
    assert code == 2 and "more than the" in err and "Traceback" not in err, err
    (folder / "cifar-10-python.tar.gz").write_bytes(built.data)
    assert call(["data", "fetch", "cifar10", "--root", str(root), "--mirror", str(folder), "--no-progress"])[0] == 0
    assert (root / "cifar-10-batches-py" / "test_batch").is_file()


def test_a_mirror_with_credentials_is_used_and_never_shown(tmp_path, monkeypatch, serve):
    mirror = serve({})
    url = mirror.url.replace("http://", "http://me:hunter2secret@") + "/?token=t0ps3cret"
    code, err = call(["data", "fetch", "cifar10", "--root", str(tmp_path / "R"), "--mirror", url])
    assert code == 2 and "HTTP 404" in err
    assert "hunter2secret" not in err and "t0ps3cret" not in err and "***@127.0.0.1" in err, err
    code, err = call(["data", "fetch", "cifar10", "--root", str(tmp_path), "--mirror", "ftp://me:hunter2secret@x/"])
    assert code == 2 and "hunter2secret" not in err and "ftp://" in err
