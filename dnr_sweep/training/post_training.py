"""What happens to a run's selected model after its last epoch, when the config asks for it.

- ``evaluate:`` stronger attacks (``pgd50x10``, ``autoattack``, ...) on the selected model; each
  becomes a metric ``<attack>_acc``; optionally the Fig. 4 curves (``attack_strength.json``) and the
  gradient-masking checks (``evaluation.json``, ``masking_checks_passed``).
- ``export: true`` on a channel-pruned run (``channel`` or ``channel_group``): the model is
  physically shrunk and exported
  (``model.pt2`` + ``model.json``), adding ``params_physical``, ``macs`` and ``speedup_cpu``
  (measured CPU speedup at batch 128 over the masked model).

Called by the finish step (:mod:`dnr_sweep.training.finish`) on the folder that holds the selected
``model.pt``; metric names come from :mod:`dnr_sweep.foundation.run_contract`.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from dnr_sweep import evaluation
from dnr_sweep.foundation import run_contract as rc
from dnr_sweep.training.engine import TrainingRun

#: pruning modes whose zeros are whole channels, so ``export: true`` shrinks and times them
CHANNEL_MODES = ("channel", "channel_group")


def after_training(run: TrainingRun, folder: Path) -> dict[str, Any]:
    """Run the configured post-training actions on ``run``'s selected model; return the new metrics."""
    config = run.config
    extra: dict[str, Any] = {}
    if config.evaluate is not None:
        spec = config.evaluate
        model = copy.deepcopy(run.model)
        model.load_state_dict(run.selected_state_dict())
        model.eval()
        pgd = config.attack.eval.pgd
        evaluator = evaluation.Evaluator(
            model, run.data.test if spec.split == "test" else run.data.val, eps=pgd.eps, pgd_alpha=pgd.alpha,
            pgd_steps=pgd.steps, pgd_random_start=pgd.random_start, pgd_restarts=pgd.restarts,
            fgsm_eps=config.attack.eval.fgsm.eps, limit=spec.limit, seed=config.train.seed, device=run.device,
            batch_size=config.train.eval_batch_size or 256,
        )  # fmt: skip
        results = {name: evaluator.run(name) for name in spec.attacks}
        extra.update({rc.attack_metric(name, spec.split): value for name, value in results.items()})
        if spec.curves:
            eps_values = spec.curve_eps if spec.curve_eps is not None else evaluation.CURVE_EPS
            evaluation.write_strength_curves(evaluator.strength_curves(eps_values=eps_values), folder)
        if spec.checks:
            checks = evaluation.check_entries(evaluator)
            extra[rc.MASKING_CHECKS_PASSED] = evaluation.all_passed(checks)
            evaluation.write_evaluation({**results, "checks": checks}, folder)
    if config.export and run.method.pruning_type in CHANNEL_MODES:  # a baseline's zeros are single weights
        from dnr_sweep.export import export_model

        summary = export_model(folder, folder / rc.EXPORT_FILE, threads=config.train.num_threads)
        extra[rc.PARAMS_PHYSICAL] = summary["params_after"]
        extra[rc.MACS] = summary["macs_after"]
        extra[rc.SPEEDUP_CPU] = summary["speedup"]["128"]
    return extra
