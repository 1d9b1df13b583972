"""``dnr-sweep export MODEL --out FILE.pt2``: shrink a channel-pruned model and export it.

Prints the JSON summary that :func:`dnr_sweep.export.export_model` also writes beside ``FILE`` (``FILE.json``).
User errors (no model there, an unloadable model or config, a bad input size, an ``--out`` that is a
folder or cannot be written) print one message and return exit code 2. An existing ``FILE`` or ``FILE.json``
is kept unless ``--force``, which replaces only an earlier export: ``FILE.json`` must be the summary an
export wrote for ``FILE`` (so ``--force`` never replaces a model, a config or a metrics file).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dnr_sweep.foundation import files, reader
from dnr_sweep.foundation.errors import ExportError, UserError
from dnr_sweep.foundation.schemas import ExportSummary


def _input_size(text: str) -> tuple[int, int, int]:
    from dnr_sweep.export import parse_input_size  # lazy: the export package pulls torch (seconds)

    try:
        return parse_input_size(text)
    except ExportError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export", help="physically shrink a channel-pruned model and write a torch.export program",
        description="Remove every channel that all its consumers ignore (zero weights), check the outputs "
                    "are unchanged, write FILE with torch.export.save and FILE.json with parameter, MAC and "
                    "measured CPU latency counts before and after.",
    )  # fmt: skip
    p.add_argument(
        "model", metavar="MODEL", help="a `dnr-sweep train --out` folder, a trial folder, or a run folder with --trial"
    )
    p.add_argument("--out", required=True, metavar="FILE.pt2", help="where the exported program goes (JSON beside it)")
    p.add_argument("--trial", default=None, metavar="ID", help="trial id (or a unique part of it) inside a run folder")
    p.add_argument(
        "--force", action="store_true", help="replace an earlier export at FILE.pt2 (and its JSON) instead of refusing"
    )
    p.add_argument("--no-shrink", action="store_true", help="export the masked full-size model, for comparison")
    p.add_argument(
        "--input-size",
        type=_input_size,
        default=None,
        metavar="C,H,W",
        help="input image shape (default from the run config: digits 8x8, CIFAR 32x32, Tiny-ImageNet 64x64)",
    )
    p.add_argument(
        "--repeats",
        type=_positive,
        default=10,
        metavar="N",
        help="timed forward passes per batch size; the median is reported (default 10)",
    )
    p.add_argument("--threads", type=_positive, default=None, metavar="N",
                   help="CPU threads while timing (default torch's, usually the core count)")  # fmt: skip


def _earlier_export(out: Path) -> bool:
    """Whether ``out.json`` is the summary an export wrote for ``out`` (and ``out`` a file, if there)."""
    summary, _ = reader.read_lenient(out.with_suffix(".json"), ExportSummary, unusable="not an export", prune=False)
    return summary is not None and Path(summary.file).name == out.name and (not out.exists() or out.is_file())


def check_outputs(out: Path, text: str, *, force: bool) -> None:
    """``--out FILE`` and ``FILE.json``: new, or (``force``) an earlier export's; never through a link."""
    summary = out.with_suffix(".json")
    if summary == out:
        raise UserError(f"--out {text}: the summary is written to FILE.json beside FILE; name the program file, "
                        "e.g. --out exports/model.pt2")  # fmt: skip
    for path in (out, summary):
        files.check_target(path)
    existing = [path for path in (out, summary) if path.exists()]
    if existing and not force:  # nothing written is lost: an earlier export is kept unless asked
        raise UserError(f"--out {text}: {existing[0]} exists (an earlier export?); choose another file, or pass "
                        "--force to replace it")  # fmt: skip
    if existing and not _earlier_export(out):
        raise UserError(f"--out {text}: {existing[0]} is not an earlier export ({summary.name} is no export summary "
                        f"naming {out.name}); --force replaces only an earlier export. Move it away or choose "
                        "another file")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    """Export ``args.model``; print the JSON summary. Returns 0 (user errors raise :class:`UserError`)."""
    out = files.output_file(args.out, "--out")  # before anything is loaded
    check_outputs(out, args.out, force=args.force)
    from dnr_sweep.export import export_model, summary_text  # lazy: torch, only once the outputs are good

    try:
        summary = export_model(args.model, out, trial=args.trial, shrink=not args.no_shrink,
                               input_size=args.input_size, repeats=args.repeats,
                               threads=args.threads)  # fmt: skip
    except OSError as exc:  # writing FILE or FILE.json (disk full, permissions)
        raise UserError(f"--out {args.out}: cannot write the export ({exc.strerror or exc}); choose another "
                        "file or free some space") from None  # fmt: skip
    print(summary_text(summary))
    return 0
