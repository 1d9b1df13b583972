"""The run contract: every file name and metric name a run writes or reports, in one place.

Config validation, the engine, the finish step, the Ray trainable, the CLI and the reports import
their vocabulary from here, so a new metric or file is a one-place change. Standard library only (no
torch, no Ray, no pandas), so ``reports`` stays light. Anchor: open_lth ``foundations/paths.py``.

A **training folder** is what one run leaves (``dnr-sweep train --out DIR``, or one trial folder);
a **run folder** is a sweep (Ray Tune's experiment folder). The metric families:

- :data:`EPOCH_METRICS`: what one epoch measured; columns of ``epochs.parquet``, reported to Tune
  under :data:`EPOCH_PREFIX` (``this_epoch/loss``);
- :data:`SELECTED_METRICS`: the selected epoch's figures on the selection split (:data:`SELECTION_SPLITS`),
  what searchers and schedulers read;
- :data:`TEST_METRICS`: the selected weights once on the test split, reported, never used to choose;
- :data:`POST_TRAINING_METRICS` and :func:`attack_metric`: the ``evaluate:``/``export:`` figures.

``metrics.json`` (:func:`metrics_json`) and a ``results.parquet`` row hold the same values for the
same ``model.pt``. Definitions: docs/RESULTS.md, "Metric definitions".
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from dnr_sweep.foundation.attack_names import ATTACK_NAME_RE

# ------------------------------------------------------------------------------------------------
# File names

#: training folder (``dnr-sweep train --out``) and trial folder
CONFIG_FILE: Final = "config.yaml"  # the resolved run config (a run folder: the sweep config as given)
MODEL_FILE: Final = "model.pt"  # plain state_dict of the selected epoch (masks applied)
METRICS_FILE: Final = "metrics.json"  # the run's result, schema: metrics_json()
CHECKPOINT_FILE: Final = "checkpoint.pt"  # `dnr-sweep train`: everything to resume
EPOCHS_CSV: Final = "epochs.csv"  # `dnr-sweep train`: one row per epoch
ATTACK_STRENGTH_FILE: Final = "attack_strength.json"  # Fig. 4 curves (evaluate: curves)
EVALUATION_FILE: Final = "evaluation.json"  # `dnr-sweep evaluate` / evaluate: checks
EXPORT_FILE: Final = "model.pt2"  # torch.export program of the shrunk model (export: true)
EXPORT_SUMMARY_FILE: Final = "model.json"  # its parameter, MAC and latency summary
TRIAL_STATE_FILE: Final = "state.pt"  # a Tune checkpoint's training state
FINAL_STATE_FILE: Final = "final_state.pt"  # a finished trial's result, replayed on a late resume
#: the selected epoch's weights beside the checkpoints that reference them, one file per epoch
SELECTED_DIR: Final = "selected"
TUNE_RESULT_FILE: Final = "result.json"  # Ray Tune's per-trial JSON lines, one per reported epoch
#: a sweep trial's own record of its epochs (a JSON list of {"epoch", this epoch's metrics}), rewritten by
#: the trial each epoch: Tune stages result.json on the driver, so a driver that dies loses its newest lines
TRIAL_EPOCHS_FILE: Final = "epochs.json"

#: run folder (``dnr-sweep run``)
SWEEP_FILE: Final = "sweep.json"  # the --set overrides and the config's source path
RESULTS_FILE: Final = "results.parquet"  # one row per trial at its selected epoch
EPOCHS_FILE: Final = "epochs.parquet"  # one row per trial-epoch
REPORT_DIR: Final = "report"  # figures, tables, index.html
#: in a report folder: what the report is (of which runs) and the files it wrote, the only ones it may write over
REPORT_MANIFEST_FILE: Final = ".dnr-sweep-report.json"
#: the driver's last word, written once ``Tuner.fit`` returned and the tables are written ({"ended", "interrupted"}):
#: ``results.parquet`` alone cannot say so, the live report rewrites it while the sweep trains
DRIVER_END_FILE: Final = "driver_end.json"


def selected_weights_file(epoch: int) -> str:
    """``selected/epoch_0007.pt``: the weights of selected epoch ``epoch``, relative to the run's folder."""
    return f"{SELECTED_DIR}/epoch_{int(epoch):04d}.pt"


def selected_weights_epoch(name: str) -> int | None:
    """The epoch of a file name :func:`selected_weights_file` wrote (its last part), else ``None``."""
    stem = name.rsplit("/", 1)[-1]
    if stem.startswith("epoch_") and stem.endswith(".pt") and stem[6:-3].isdigit():
        return int(stem[6:-3])
    return None


#: either kind of folder: held by the one process writing into it
LOCK_FILE: Final = ".dnr-sweep.lock"

#: Ray Tune's own files, read (as JSON or text only, never unpickled) by ``dnr-sweep status``
TUNE_STATE_GLOB: Final = "experiment_state-*.json"  # run folder: Tune's snapshot of every trial (~every 10 s)
TUNE_ERROR_FILE: Final = "error.txt"  # trial folder: a failed trial's traceback, one block per failure
TUNE_PARAMS_FILE: Final = "params.json"  # trial folder: the trial's sampled values (dotted keys)

# ------------------------------------------------------------------------------------------------
# Metric names

Split = Literal["val", "test"]
SELECTION_SPLITS: Final[tuple[str, ...]] = ("val", "test")
ACCURACY_KINDS: Final[tuple[str, ...]] = ("clean", "fgsm", "pgd")
LAYER_PREFIX: Final = "layer_density/"
EPOCH_PREFIX: Final = "this_epoch/"

SPARSITY_METRICS: Final[tuple[str, ...]] = ("density", "mask_density", "compression", "channels_present")
VAL_METRICS: Final[tuple[str, ...]] = ("val_clean_acc", "val_fgsm_acc", "val_pgd_acc")
TEST_METRICS: Final[tuple[str, ...]] = ("clean_acc", "fgsm_acc", "pgd_acc")
#: the paper protocol's per-epoch figures (``train.select_on: test``): the test split, per epoch
TEST_SELECTION_METRICS: Final[tuple[str, ...]] = ("test_clean_acc", "test_fgsm_acc", "test_pgd_acc")

#: a training method's own per-epoch figures, in the metrics of the epochs that measure them (epochs.parquet
#: leaves the other rows empty):
#: ``admm_residual`` = sqrt(sum_l ||W_l - Z_l||_F^2) over the prunable layers, after the epoch's training and
#: before its Z/U update (the distance to the sparse point the epoch was pulled to); ``admm_rho``: the
#: epoch's penalty rho (ADMM's ``rho_growth`` schedule)
METHOD_EPOCH_METRICS: Final[tuple[str, ...]] = ("admm_residual", "admm_rho")
#: a training method's own run-level figures, in every run's result (NaN where the method has none):
#: ``prune_energy_removed`` = ||W - prune(W)||^2 / ||W||^2 over the prunable weights at the hard prune
#: (ADMM: retraining's start; Lasso: the threshold step); ``magnitude_energy_removed``: the same fraction
#: for magnitude pruning of the pre-trained weights (ADMM: the weights entering its ADMM phase) at the
#: same per-layer budgets. An ADMM phase that did its work removes much less than magnitude pruning
METHOD_RUN_METRICS: Final[tuple[str, ...]] = ("prune_energy_removed", "magnitude_energy_removed")

#: what one epoch measured; ``epochs.parquet`` columns (plus ``trial_id``, ``epoch`` and layer densities).
#: ``loss_l2`` is the method's regulariser (DNR: dynamic L2; ADMM: rho/2 ||W - Z + U||^2; Lasso:
#: lambda |W|_1; HYDRA: 0); ``fwd_equiv``: the epoch's training cost per image (see TRAIN_FWD_EQUIV)
EPOCH_METRICS: Final[tuple[str, ...]] = (
    "phase", "lr", "loss", "loss_clean", "loss_adv", "loss_l2", "train_acc",
    *VAL_METRICS, *TEST_SELECTION_METRICS,
    *SPARSITY_METRICS, "prune_rate", "train_time_s", "epoch_time_s", "fwd_equiv", *METHOD_EPOCH_METRICS,
)  # fmt: skip

#: the selected epoch's figures (every Tune result, metrics.json, results.parquet)
SELECTED_METRICS: Final[tuple[str, ...]] = (*VAL_METRICS, *TEST_SELECTION_METRICS, *SPARSITY_METRICS)

#: training methods (``method:`` in a config; :mod:`dnr_sweep.methods` holds one module each)
METHODS: Final[tuple[str, ...]] = ("dnr", "admm", "lasso", "hydra")
#: the phases a method's epochs belong to (an epoch's ``phase``; ``epochs_<phase>`` counts them)
PHASES: Final[tuple[str, ...]] = ("warmup", "hybrid", "pretrain", "admm", "lasso", "prune", "retrain", "finetune")

#: bookkeeping keys of a run's result (``method``, ``pruning_type``: what trained it, for Table 2)
RUN_KEYS: Final[tuple[str, ...]] = (
    "selected_epoch", "selected_on", "select_metric", "epochs", "method", "pruning_type",
)  # fmt: skip

# Training cost (every method; the run's result). A *forward-equivalent* (FE) is the compute of one
# forward pass of one image; a backward pass counts 2 FE (the usual FLOP ratio, weight or input
# gradients alike). Per training step and image: every attack step is one forward and one backward
# (3 FE; PGD-k: 3k, FGSM: 3; TRADES' KL adversary adds the forward of its clean target: 3k + 1); every
# forward through the network for the loss is 1 FE and the loss's backward 2 FE per such forward. So
# clean-only training costs 3 FE, the hybrid loss with PGD-7 21 + 2 + 4 = 27 FE, PGD-7 adversarial-only
# training (beta 0) 21 + 1 + 2 = 24 FE, HYDRA's TRADES-7 22 + 2 + 4 = 28 FE. An epoch's
# ``fwd_equiv`` is its FE per training-set image (its steps' FE weighted by their batch sizes, over
# the training-set size); the per-epoch validation, the final test evaluation and post-training
# attacks are not training and are not counted (their cost is the same for every method).
#: forward-equivalents per training image, summed over every epoch of every phase
TRAIN_FWD_EQUIV: Final = "train_fwd_equiv"
#: epochs whose training steps generated adversarial examples (the loss's clean weight beta < 1; DNR's
#: clean-only warmup and a baseline's clean phases are not counted)
TRAIN_ADV_EPOCHS: Final = "train_adv_epochs"
COST_METRICS: Final[tuple[str, ...]] = (TRAIN_FWD_EQUIV, TRAIN_ADV_EPOCHS)
#: a report column, not a run metric: seconds of all epochs (the sum of their ``epoch_time_s``:
#: training, per-epoch validation, mask updates; no final test evaluation). Kept out of metrics.json
#: so that a run's result is deterministic (a resumed run's equals an uninterrupted one's)
TRAIN_WALL_S: Final = "train_wall_s"
PHASE_EPOCHS_PREFIX: Final = "epochs_"


def phase_epochs_metric(phase: str) -> str:
    """``epochs_pretrain``: the epochs a run spent in ``phase`` (one of :data:`PHASES`)."""
    if phase not in PHASES:
        raise ValueError(f"unknown phase {phase!r}; valid: {', '.join(PHASES)}")
    return PHASE_EPOCHS_PREFIX + phase


def is_phase_epochs_metric(name: str) -> bool:
    return name.startswith(PHASE_EPOCHS_PREFIX) and name[len(PHASE_EPOCHS_PREFIX) :] in PHASES


#: Tune-result-only keys: the epoch just trained and whether this result is the trial's last
EPOCH_KEY: Final = "epoch"
FINAL_FLAG: Final = "final"


@dataclass(frozen=True)
class PostTrainingMetric:
    name: str
    description: str


POST_TRAINING_METRICS: dict[str, PostTrainingMetric] = {}


def register_post_training(name: str, description: str) -> str:
    """Add a post-training metric (a key of ``metrics.json`` and a ``results.parquet`` column)."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name) or name in SELECTED_METRICS + TEST_METRICS + RUN_KEYS:
        raise ValueError(f"cannot register metric {name!r}: needs a new snake_case name")
    POST_TRAINING_METRICS[name] = PostTrainingMetric(name, description)
    return name


PARAMS_PHYSICAL: Final = register_post_training("params_physical", "parameters of the shrunk model (export: true)")
MACS: Final = register_post_training("macs", "multiply-accumulates per image of the shrunk model (export: true)")
SPEEDUP_CPU: Final = register_post_training("speedup_cpu", "measured CPU speedup at batch 128 (export: true)")
MASKING_CHECKS_PASSED: Final = register_post_training(
    "masking_checks_passed", "every gradient-masking check passed (evaluate: checks)"
)

# Metrics of the evaluate: block's attacks; the names' grammar lives in dnr_sweep/attack_names.py
_ATTACK_METRIC_RE: Final = re.compile(rf"(?P<val>val_)?(?P<attack>{ATTACK_NAME_RE.pattern})_acc")


def attack_metric(attack: str, split: Split = "test") -> str:
    """The metric of a post-training attack: ``pgd50x10_acc`` (test) or ``val_pgd50x10_acc``."""
    if not ATTACK_NAME_RE.fullmatch(attack):
        raise ValueError(f"unknown attack {attack!r}")
    return f"{'val_' if split == 'val' else ''}{attack}_acc"


def selection_metrics(split: str) -> tuple[str, str, str]:
    """Per-epoch clean/FGSM/PGD accuracy names of the selection split."""
    if split not in SELECTION_SPLITS:
        raise ValueError(f"unknown selection split {split!r}; valid: {', '.join(SELECTION_SPLITS)}")
    return VAL_METRICS if split == "val" else TEST_SELECTION_METRICS  # type: ignore[return-value]


#: the accuracy kind that chooses the epoch by default on validation: robust accuracy
#: (README "Only validation chooses"; evidence in docs/REPRODUCE.md); the paper's protocol chooses on clean
DEFAULT_SELECT_KIND: Final = {"val": "pgd", "test": "clean"}


def default_select_metric(split: str) -> str:
    """The figure that chooses the epoch when ``train.select_metric`` is not given."""
    return selection_metrics(split)[ACCURACY_KINDS.index(DEFAULT_SELECT_KIND[split])]


def tie_break_metric(select_metric: str) -> str:
    """The figure that breaks a tie on ``select_metric``: clean accuracy, or PGD when clean chooses."""
    for split in SELECTION_SPLITS:
        names = selection_metrics(split)
        if select_metric in names:
            return names[2] if select_metric == names[0] else names[0]
    raise ValueError(f"{select_metric!r} is not a per-epoch selection figure; valid: {', '.join(VAL_METRICS)}")


def is_layer_metric(name: str) -> bool:
    return name.startswith(LAYER_PREFIX) and len(name) > len(LAYER_PREFIX)


def is_attack_metric(name: str) -> bool:
    """``<attack>_acc`` / ``val_<attack>_acc`` for an attack of the evaluate: grammar (not clean/fgsm/pgd)."""
    match = _ATTACK_METRIC_RE.fullmatch(name)
    return match is not None and match["attack"] not in ACCURACY_KINDS


def is_run_metric(name: str) -> bool:
    """A key a run's result (metrics.json, a results.parquet metric column) may hold."""
    return (
        name in SELECTED_METRICS
        or name in TEST_METRICS
        or name in RUN_KEYS
        or name in POST_TRAINING_METRICS
        or name in COST_METRICS
        or name in METHOD_RUN_METRICS
        or is_phase_epochs_metric(name)
        or is_layer_metric(name)
        or is_attack_metric(name)
    )


def is_test_metric(name: str) -> bool:
    """Measured on the test split: only reported, never used to choose anything."""
    if name in TEST_METRICS or name in TEST_SELECTION_METRICS:
        return True
    return is_attack_metric(name) and not name.startswith("val_")


def is_validation_metric(name: str) -> bool:
    return name in VAL_METRICS or (is_attack_metric(name) and name.startswith("val_"))


#: metrics a searcher, scheduler or tune.metric may optimise: selected validation figures, sparsity
CHOOSABLE_METRICS: Final[tuple[str, ...]] = (*VAL_METRICS, *SPARSITY_METRICS)


def validation_twin(name: str) -> str | None:
    """The validation metric to use instead of test metric ``name`` (``pgd_acc`` -> ``val_pgd_acc``)."""
    base = name[len("test_") :] if name.startswith("test_") else name
    twin = f"val_{base}"
    return twin if twin in VAL_METRICS else None


def epoch_key(name: str) -> str:
    """The Tune result key of per-epoch metric ``name`` (``this_epoch/loss``)."""
    return EPOCH_PREFIX + name


def split_epoch_result(result: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A Tune result -> (this epoch's metrics without the prefix, the top-level run keys)."""
    epoch: dict[str, Any] = {}
    top: dict[str, Any] = {}
    for key, value in result.items():
        if key.startswith(EPOCH_PREFIX):
            epoch[key[len(EPOCH_PREFIX) :]] = value
        else:
            top[key] = value
    return epoch, top


# ------------------------------------------------------------------------------------------------
# metrics.json

#: metrics.json keys in their written order (post-training and attack keys follow, then layer_density)
METRICS_JSON_HEAD: Final[tuple[str, ...]] = (
    "selected_epoch", "selected_on", "select_metric", "epochs",
    *TEST_METRICS, *VAL_METRICS, *TEST_SELECTION_METRICS, *SPARSITY_METRICS,
)  # fmt: skip
LAYER_DENSITY_KEY: Final = "layer_density"  # metrics.json nests the per-layer densities under this key


def metrics_json(result: Mapping[str, Any]) -> dict[str, Any]:
    """The ``metrics.json`` object of a run's result (flat ``layer_density/<layer>`` keys nested).

    Keys: :data:`METRICS_JSON_HEAD` that are present, then post-training/attack metrics by name,
    then ``layer_density: {layer: density}``. Any other key is a contract violation (``ValueError``):
    a new metric is registered here first.
    """
    unknown = sorted(k for k in result if not is_run_metric(k))
    if unknown:
        raise ValueError(
            f"not metrics of the run contract: {unknown}; register them in dnr_sweep/foundation/run_contract.py"
        )
    out: dict[str, Any] = {k: result[k] for k in METRICS_JSON_HEAD if k in result}
    for key in sorted(k for k in result if k not in out and not is_layer_metric(k)):
        out[key] = result[key]
    layers = {k[len(LAYER_PREFIX) :]: result[k] for k in result if is_layer_metric(k)}
    if layers:
        out[LAYER_DENSITY_KEY] = layers
    return out


def flat_metrics(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """``metrics.json`` object -> flat result keys (``layer_density/<layer>``); checks the schema."""
    if not isinstance(metrics, Mapping):
        raise ValueError(f"expected a JSON object, got {type(metrics).__name__}")
    flat: dict[str, Any] = {}
    for key, value in metrics.items():
        if key == LAYER_DENSITY_KEY:
            if not isinstance(value, Mapping):
                raise ValueError(f"'{LAYER_DENSITY_KEY}' must map layer names to densities")
            flat.update({LAYER_PREFIX + str(layer): value[layer] for layer in value})
        elif is_run_metric(key):
            flat[key] = value
        else:
            raise ValueError(f"unknown key {key!r}")
    for key in ("selected_epoch", *TEST_METRICS):
        if key not in flat:
            raise ValueError(f"missing key {key!r}")
    return flat


def tune_result(
    epoch: int, metrics: Mapping[str, Any], selected: Mapping[str, Any], final: Mapping[str, Any] | None
) -> dict[str, Any]:
    """One Ray Tune result: ``epoch``, this epoch's metrics under :data:`EPOCH_PREFIX`, the selected
    figures at the top level, and on the last epoch the run's result (``final`` true)."""
    result: dict[str, Any] = {EPOCH_KEY: epoch, **{epoch_key(k): v for k, v in metrics.items()}, **selected}
    if final is not None:
        result.update(final)
    result[FINAL_FLAG] = final is not None
    return result
