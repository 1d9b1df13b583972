"""``dnr-sweep data fetch|check DATASET|CONFIG...``: get a data set onto this machine once, verified.

``fetch`` downloads (progress bar: bytes, rate, ETA) from the official URL or a mirror (``--mirror``,
else the config's ``data.mirror``, else ``$DNR_SWEEP_DATA_MIRROR``), checks the MD5, unpacks into a
temporary folder and renames it into place, under a file lock (:mod:`dnr_sweep.data.fetch`); an
archive already under the root is checked and unpacked without the network. ``check`` re-reads every
file's MD5 (CIFAR) or the folder's structure (Tiny-ImageNet) and names the first bad file. A target
is a data set name (``cifar100``) or a config (its ``data.dataset``, ``data.root``, ``data.mirror``);
``--root`` overrides the root (default: the config's, else ``~/.cache/dnr-sweep/data``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dnr_sweep.data import fetch as data_fetch
from dnr_sweep.data import specs as dataset_specs
from dnr_sweep.foundation.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="fetch a data set once (verified) or check one already on disk")
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    fetch = verbs.add_parser("fetch", help="download (or unpack an archive under --root), verify, put in place")
    check = verbs.add_parser("check", help="verify a data set on disk (every file's MD5, or its structure)")
    for q in (fetch, check):
        q.add_argument("targets", nargs="+", metavar="DATASET|CONFIG",
                       help="a data set name (cifar10, cifar100, tinyimagenet) or a config file")  # fmt: skip
        q.add_argument("--root", default=None, metavar="DIR", help="where the data sets live (default: the "
                       "config's data.root, else ~/.cache/dnr-sweep/data)")  # fmt: skip
    fetch.add_argument("--mirror", default=None, metavar="URL|DIR",
                       help="a base URL (http://, https://, file://) or folder serving the archives under their "
                            "official names; MD5s are still checked")  # fmt: skip
    fetch.add_argument("--no-progress", action="store_true", help="no progress bar")


def _target(text: str, root: str | None) -> tuple[str, Path, str | None]:
    """(data set, root, configured mirror) of a name or a config file."""
    from dnr_sweep.config import DataConfig  # lazy: the config schema pulls PyYAML; --help stays light

    if text in dataset_specs.DATASETS:
        return text, Path(root or DataConfig().root).expanduser(), None
    if not Path(text).is_file():
        raise ConfigError(f"{text!r}: neither a data set ({', '.join(dataset_specs.DATASET_NAMES)}) nor a config file")
    from dnr_sweep.config import load_sweep_config  # lazy: as above

    data = load_sweep_config(text, []).data
    return data.dataset, Path(root).expanduser() if root else data.root_path, data.mirror


def run(args: argparse.Namespace) -> int:
    targets = [_target(text, args.root) for text in args.targets]  # every target parses before any download
    for dataset, root, configured in targets:
        spec = dataset_specs.get(dataset)
        if spec.archive is None:
            print(f"{dataset}: nothing to fetch (bundled or generated)")
            continue
        if args.verb == "check":
            folder = data_fetch.verify(spec, root, full=True)
            checked = len(spec.archive.files) or "structure"
            print(f"{dataset}: ok, {folder} ({checked} verified)")
            continue
        mirror = data_fetch.resolve_mirror(args.mirror, configured)
        how = data_fetch.ensure(spec, root, mirror=mirror, progress=not args.no_progress)
        print(f"{dataset}: {how}, verified, in {root / spec.archive.folder}")
    return 0
