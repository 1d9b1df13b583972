"""The export pipeline: a trained model folder -> shrunk, checked, ``torch.export``-ed program + summary.

:func:`export_model` ties the pieces together for a trained model folder: shrink
(:func:`dnr_sweep.export.shrinking.shrink`), check the outputs against the loaded masked model
(:data:`TOLERANCE`), write a ``torch.export`` program (dynamic batch dimension) and a JSON summary
with parameter and MAC counts and measured CPU latency before and after.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dnr_sweep import methods
from dnr_sweep.config.fields import MAX_IMAGE_SIZE
from dnr_sweep.data import specs as dataset_specs
from dnr_sweep.export.cost import ForwardEstimate, estimate_forward, measure_latency
from dnr_sweep.export.shrinking import shrink as _shrink_fn  # export_model's `shrink` flag shadows the name
from dnr_sweep.foundation import files
from dnr_sweep.foundation.errors import ExportError

__all__ = [
    "MAX_EXPORT_BATCH",
    "MAX_EXPORT_MACS",
    "MAX_INPUT_SIDE",
    "check_input_size",
    "TOLERANCE",
    "default_input_size",
    "export_model",
    "export_program",
    "parse_input_size",
    "summary_text",
]

#: largest allowed max |shrunk - masked| output difference (eval mode, float32)
TOLERANCE = 1e-5
#: largest batch the exported program accepts (its dynamic batch dimension's upper bound)
MAX_EXPORT_BATCH = 65536
#: largest height or width of an export's input: the bound of ``data.image_size``
MAX_INPUT_SIDE = MAX_IMAGE_SIZE
#: largest C*H*W of one input (three channels at the largest side)
MAX_INPUT_VALUES = 3 * MAX_INPUT_SIDE**2
#: most multiply-accumulates one export may run (every forward pass of its checks and timings): about a
#: quarter of an hour on a CPU doing 1e11 a second; CIFAR's ResNet18 at 32x32 needs 2e12
MAX_EXPORT_MACS = 1e14
#: images the export's checks run besides the timing: tracing (2), the shrunk and the exported model each
#: against the masked one on 16
CHECK_IMAGES = 2 + 2 * 16 + 2 * 16
#: warm-up passes :func:`~dnr_sweep.export.cost.measure_latency` runs before the timed ones
TIMING_WARMUP = 2
#: the export's activations may take at most this fraction of the machine's memory
MEMORY_FRACTION = 0.5


def default_input_size(config: Any, model: nn.Module) -> tuple[int, int, int]:
    """(C, H, W) of the run's images: ``data.image_size``, else the data set's native size (its spec in
    :mod:`dnr_sweep.data.specs`); channels from the model's normalisation stem (or its first conv)."""
    side = config.data.image_size or dataset_specs.get(config.data.dataset).image_size
    return model_channels(model), int(side), int(side)


def model_channels(model: nn.Module) -> int:
    """The channels of the images ``model`` takes: its normalisation stem's, else its first conv's."""
    stem = getattr(model, "normalize", None)
    if stem is not None and hasattr(stem, "mean"):
        return int(stem.mean.shape[1])
    return next(m.in_channels for m in model.modules() if isinstance(m, nn.Conv2d))


def parse_input_size(text: str) -> tuple[int, int, int]:
    """``"C,H,W"`` -> (C, H, W): positive ints, each side at most :data:`MAX_INPUT_SIDE`, their product at
    most :data:`MAX_INPUT_VALUES`; ``ExportError`` naming the value otherwise."""
    parts = [p.strip() for p in text.split(",")]
    try:
        size = tuple(int(p) for p in parts)
    except ValueError:
        size = ()
    if len(size) != 3 or min(size) < 1:
        raise ExportError(f"--input-size must be three positive integers C,H,W (e.g. 3,32,32), got {text!r}")
    if max(size[1:]) > MAX_INPUT_SIDE or math.prod(size) > MAX_INPUT_VALUES:
        raise ExportError(f"--input-size {text}: at most {MAX_INPUT_SIDE} pixels a side and {MAX_INPUT_VALUES} "
                          f"values (C*H*W) an image; give the size the model was trained on, e.g. 3,32,32")  # fmt: skip
    return size  # type: ignore[return-value]


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _smallest_side(model: nn.Module, channels: int) -> int | None:
    """The smallest square side the model takes (on the meta device), ``None`` if none up to the bound."""
    lo, hi = 1, MAX_INPUT_SIDE
    try:
        estimate_forward(model, (channels, hi, hi))
    except (RuntimeError, ValueError):
        return None
    while lo < hi:
        mid = (lo + hi) // 2
        try:
            estimate_forward(model, (channels, mid, mid))
            hi = mid
        except (RuntimeError, ValueError):
            lo = mid + 1
    return lo


def check_input_size(model: nn.Module, size: Sequence[int], *, what: str, batch_sizes: Sequence[int] = (1, 128),
                     repeats: int = 10, shrink: bool = True,
                     smaller: str = "give a smaller --input-size, or fewer --repeats") -> ForwardEstimate:  # fmt: skip
    """Before anything runs: ``model`` takes inputs of ``size`` (C, H, W), and an export at that size stays
    within :data:`MAX_EXPORT_MACS` and :data:`MEMORY_FRACTION` of this machine's memory, estimated on the
    meta device (:func:`~dnr_sweep.export.cost.estimate_forward`). ``ExportError`` naming ``what`` (the flag
    or the setting the size came from) and the fix (``smaller``: how to make the export cheaper) otherwise;
    torch's own error never reaches the user."""
    shown = ",".join(str(v) for v in size)
    channels = model_channels(model)
    if size[0] != channels:
        raise ExportError(f"{what} {shown}: the model takes {channels}-channel images, not {size[0]}; give "
                          f"{channels},{size[1]},{size[2]}")  # fmt: skip
    try:
        estimate = estimate_forward(model, size)
    except (RuntimeError, ValueError) as exc:  # e.g. "Output size is too small" of a pooling layer
        smallest = _smallest_side(model, channels)
        fix = f"give at least {channels},{smallest},{smallest}" if smallest else "give the size it was trained on"
        reason = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"{what} {shown}: the model cannot take {size[1]}x{size[2]} images ({reason}); "
                          f"{fix}") from None  # fmt: skip
    images = CHECK_IMAGES + (TIMING_WARMUP + repeats) * sum(batch_sizes) * (2 if shrink else 1)
    macs = estimate.macs * images
    if macs > MAX_EXPORT_MACS:
        raise ExportError(f"{what} {shown}: the export would run about {macs:.2g} multiply-accumulates ({images} "
                          f"images of {estimate.macs:.3g}), more than {MAX_EXPORT_MACS:.0e}; {smaller}")  # fmt: skip
    need = 2 * estimate.activations * max(*batch_sizes, 16) * 4  # float32, twice the largest layer's in + out
    memory = _physical_memory()
    if memory is not None and need > MEMORY_FRACTION * memory:
        raise ExportError(f"{what} {shown}: a batch of {max(*batch_sizes, 16)} would need about {need / 2**30:.1f} "
                          f"GiB for its activations, more than half of this machine's {memory / 2**30:.1f} GiB; "
                          f"{smaller}")  # fmt: skip
    return estimate


def _max_diff(a: nn.Module, b: nn.Module, x: torch.Tensor) -> float:
    with torch.inference_mode():
        return float((a(x) - b(x)).abs().max())


def export_program(model: nn.Module, input_size: Sequence[int]) -> torch.export.ExportedProgram:
    """``torch.export`` of ``model`` in eval mode for inputs (N, *input_size), N dynamic in [1, 65536]."""
    model.eval()
    batch = torch.export.Dim("batch", min=1, max=MAX_EXPORT_BATCH)
    return torch.export.export(model, (torch.rand(2, *input_size),), dynamic_shapes=({0: batch},))


def export_model(path: str | Path, out_file: str | Path, *, trial: str | None = None, shrink: bool = True,
                 input_size: Sequence[int] | None = None, batch_sizes: Sequence[int] = (1, 128),
                 repeats: int = 10, threads: int | None = None, seed: int = 0) -> dict[str, Any]:  # fmt: skip
    """Export the trained model at ``path`` (a train folder, a trial folder, or a run folder + ``trial``).

    Shrinks it (unless ``shrink=False``), checks that its outputs equal the loaded model's within
    :data:`TOLERANCE` on random inputs, writes ``out_file`` with ``torch.export.save`` (load it with
    ``torch.export.load(out_file).module()``; the batch dimension is dynamic) and
    ``out_file.with_suffix(".json")`` with the summary, which it also returns. Latency is the median
    of ``repeats`` CPU forward passes per batch size with ``threads`` threads (default torch's); with
    ``shrink=False`` the "after" figures are the "before" ones (the same model).

    Raises:
        FileNotFoundError: no model at ``path``.
        ExportError: a bad ``input_size`` or a model that cannot be traced or exported.
        RuntimeError: the shrunk model's outputs differ (a bug, never expected).
    """
    # lazy: model_folder pulls torchvision and the data loaders, which `validate` (via check_input_size) never needs
    from dnr_sweep.artifacts.model_folder import checkpoint, load_trained

    try:
        trained = load_trained(path, trial, load_data=False)
    except RuntimeError as exc:  # load_state_dict: shapes or keys that do not fit the config's model
        raise ExportError(f"{path}: model.pt does not fit the model its config.yaml describes: {exc}") from exc
    masked = trained.model.eval()
    size = tuple(int(v) for v in input_size) if input_size is not None else default_input_size(trained.config, masked)
    if len(size) != 3 or min(size) < 1:
        raise ExportError(f"input_size must be (C, H, W) positive ints, got {input_size!r}")
    what = "--input-size" if input_size is not None else "the run's image size (data.image_size or the data set's)"
    check_input_size(masked, size, what=what, batch_sizes=batch_sizes, repeats=repeats, shrink=shrink)
    generator = torch.Generator().manual_seed(seed)
    try:
        # torch.fx's shape propagation prints a traceback before it raises: the message below says it all
        with contextlib.redirect_stderr(io.StringIO()):
            report = _shrink_fn(masked, torch.rand(2, *size, generator=generator))
    except RuntimeError as exc:  # shape errors the check above did not foresee
        raise ExportError(f"{what} {','.join(map(str, size))}: the model does not accept inputs of this size "
                          f"({str(exc).strip().splitlines()[0][:120] if str(exc).strip() else exc!r}); give the "
                          "size it was trained on") from None  # fmt: skip
    final = report.model.eval() if shrink else masked
    probe = torch.rand(16, *size, generator=generator)
    diff = _max_diff(final, masked, probe)
    if not diff <= TOLERANCE:
        raise RuntimeError(f"shrunk model differs from the masked one by {diff:.3g} > {TOLERANCE}")

    out_file = files.make_folder(Path(out_file).parent) / Path(out_file).name
    try:
        program = export_program(final, size)
    except Exception as exc:  # noqa: BLE001 - torch.export raises many kinds
        raise ExportError(f"torch.export failed for {trained.config.model.arch}: {exc}") from exc
    files.write_file(out_file, lambda handle: torch.export.save(program, handle))
    loaded = torch.export.load(out_file).module()
    diff_exported = _max_diff(loaded, masked, probe)

    before = measure_latency(masked, size, batch_sizes, repeats=repeats, threads=threads)
    after = measure_latency(final, size, batch_sizes, repeats=repeats, threads=threads) if shrink else before
    removable = sum(len(s.removable) for s in report.spaces)
    method = methods.build(trained.config)  # what trained it: a baseline's pruning and density are its own
    summary: dict[str, Any] = {
        "model": str(trained.folder), "file": str(out_file), "arch": trained.config.model.arch,
        "dataset": trained.config.data.dataset, "method": trained.config.method, "pruning": method.pruning_type,
        "density": getattr(trained.config.method_block or trained.config.dnr, "density", None),
        "input_size": list(size), "shrunk": shrink,
        "dynamic_batch": [1, MAX_EXPORT_BATCH],
        "params_before": report.params_before, "params_after": report.params_after if shrink else report.params_before,
        "macs_before": report.macs_before, "macs_after": report.macs_after if shrink else report.macs_before,
        "channels_removable": removable, "channels_removed": removable if shrink else 0,
        "max_abs_diff": diff, "max_abs_diff_exported": diff_exported, "tolerance": TOLERANCE,
        "latency_ms": {"before": {str(b): v["latency_ms"] for b, v in before.items()},
                       "after": {str(b): v["latency_ms"] for b, v in after.items()}},
        "throughput_per_s": {"before": {str(b): v["throughput_per_s"] for b, v in before.items()},
                             "after": {str(b): v["throughput_per_s"] for b, v in after.items()}},
        "speedup": {str(b): before[b]["latency_ms"] / after[b]["latency_ms"] for b in before},
        "timing": {"device": "cpu", "threads": threads or torch.get_num_threads(), "repeats": repeats, "statistic": "median",
                   "torch": torch.__version__},
        "input_channels_removed": ({n: v["in"][0] - v["in"][1] for n, v in report.layers.items()} if shrink
                                   else {n: 0 for n in report.layers}),
        "layers": report.layers if shrink else {n: {"in": [v["in"][0]] * 2, "out": [v["out"][0]] * 2}
                                                for n, v in report.layers.items()},
    }  # fmt: skip
    if removable == 0:
        summary["note"] = ("no channel is zero in all its consumers (irregular pruning zeroes single weights, "
                           "not whole input channels), so no channels were removable")  # fmt: skip
    checkpoint.write_json(summary, out_file.with_suffix(".json"))
    return summary


def summary_text(summary: dict[str, Any]) -> str:
    """The summary as indented JSON (what ``dnr-sweep export`` prints)."""
    return json.dumps(summary, indent=2)
