"""``dnr-sweep evaluate MODEL``: accuracies under stronger attacks, Fig. 4 curves, gradient-masking checks.

Torch and the model code are imported inside :func:`run`, so ``dnr-sweep --help`` stays fast. Writes
``evaluation.json`` (and with ``--curves`` ``attack_strength.json``) into the model's folder, holding
the folder's lock meanwhile (a second writer is refused). Flags are checked before anything is
loaded; user errors (bad flag, missing folder, unloadable model, missing ``[eval]`` extra) print one
message, exit code 2.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from dnr_sweep.foundation import files
from dnr_sweep.foundation import locks as folder_lock
from dnr_sweep.foundation.attack_names import ATTACK_FORMS, parse_attacks
from dnr_sweep.foundation.bounds import MAX_BATCH_SIZE, MAX_IMAGES, MAX_SEED
from dnr_sweep.foundation.errors import UserError
from dnr_sweep.foundation.run_contract import ATTACK_STRENGTH_FILE, EVALUATION_FILE

DEFAULT_ATTACKS = "fgsm,pgd,pgd20,pgd50x10"
_FORM_NAMES = ", ".join(form.split(" ")[0] for form in ATTACK_FORMS)  # clean, fgsm, pgd, pgdK, ...


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate", help="robust accuracy under stronger attacks (restarts, AutoAttack) + masking checks",
        description="Evaluate a trained model (a `dnr-sweep train --out` folder, or a run folder with "
                    "--trial) under named attacks, run the gradient-masking checks, and write "
                    "evaluation.json (and attack_strength.json with --curves) into the model's folder.",
    )  # fmt: skip
    p.add_argument("model", metavar="MODEL", help="a folder with config.yaml + model.pt, or a run folder")
    p.add_argument("--trial", default=None, metavar="ID", help="trial id (or a unique part) in a run folder")
    p.add_argument(
        "--attacks", default=DEFAULT_ATTACKS, help=f"comma-separated: {_FORM_NAMES} (default {DEFAULT_ATTACKS})"
    )
    p.add_argument("--eps", default=None, help="L-inf radius for every attack, e.g. 8/255 (default: the config's)")
    p.add_argument("--alpha", default=None, type=float, help="PGD step size (default: the config's eval alpha)")
    p.add_argument("--split", choices=("test", "val"), default="test")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="evaluate the first N images only")
    p.add_argument("--batch-size", type=int, default=None, help="default: the config's eval batch size or 256")
    p.add_argument("--seed", type=int, default=0, help="seed of the random starts and of AutoAttack")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--curves", action="store_true", help="also compute Fig. 4 curves -> attack_strength.json")
    p.add_argument(
        "--curve-eps",
        default=None,
        metavar="E1,E2,...",
        help="eps values of the eps curve (default 1/255,2/255,4/255,8/255,12/255,16/255)",
    )
    p.add_argument("--no-checks", action="store_true", help="skip the gradient-masking checks")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")


def _parse_eps(text: str, option: str) -> float:
    from dnr_sweep.config import parse_eps  # lazy: the config schema pulls PyYAML; --help stays light

    try:
        value = parse_eps(text)
    except ValueError as exc:
        raise UserError(f"{option}: {exc}") from None
    if not 0 <= value <= 1:
        raise UserError(f"{option}: must be in [0, 1] (pixel units, e.g. 8/255), got {text!r}")
    return value


def _check_flags(args: argparse.Namespace) -> tuple[list, float | None, list[float]]:
    """Every flag, before anything is loaded: (attack specs, --eps, --curve-eps values)."""
    from dnr_sweep import evaluation as ev  # lazy: torch (seconds to import) only when evaluate runs

    try:
        specs = parse_attacks(["clean", *(spec.name for spec in parse_attacks(args.attacks))])
    except ValueError as exc:
        raise UserError(f"--attacks: {exc}") from None
    if any(spec.kind == "autoattack" for spec in specs):
        try:
            ev.require_autoattack()
        except ImportError as exc:
            raise UserError(f"--attacks autoattack: {exc}") from None
    eps_override = None if args.eps is None else _parse_eps(args.eps, "--eps")
    curve_eps = (
        [_parse_eps(item, "--curve-eps") for item in args.curve_eps.split(",") if item.strip()]
        if args.curve_eps else list(ev.CURVE_EPS)
    )  # fmt: skip
    if not curve_eps:
        raise UserError("--curve-eps: no value given; e.g. --curve-eps 2/255,8/255")
    for flag, value, hi in (("--limit", args.limit, MAX_IMAGES), ("--batch-size", args.batch_size, MAX_BATCH_SIZE),
                            ("--seed", args.seed, MAX_SEED)):  # fmt: skip
        if value is not None and not (0 if flag == "--seed" else 1) <= value <= hi:
            raise UserError(f"{flag}: must be in [{0 if flag == '--seed' else 1}, {hi}], got {value}")
    if args.alpha is not None and not (0 < args.alpha <= 1):  # also refuses nan
        raise UserError(f"--alpha: must be in (0, 1] (pixel units), got {args.alpha}")
    return specs, eps_override, curve_eps


def run(args: argparse.Namespace) -> int:
    """Run ``dnr-sweep evaluate``; returns the exit code (user errors raise :class:`UserError`)."""
    specs, eps_override, curve_eps = _check_flags(args)
    # lazy: torch and the model code take seconds to import; only once the flags are good
    import torch

    from dnr_sweep.artifacts.model_folder import resolve_model_dir

    if args.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available; use --device cpu")
    folder = resolve_model_dir(args.model, args.trial)
    with folder_lock.hold(folder, purpose="evaluate"):
        for name in (EVALUATION_FILE, f"{EVALUATION_FILE}.unreadable", ATTACK_STRENGTH_FILE):
            files.check_target(folder / name)  # a link where evaluate writes: refused before the work
        return _evaluate(args, specs, eps_override, curve_eps)


def _evaluate(args: argparse.Namespace, specs: list, eps_override: float | None, curve_eps: list[float]) -> int:
    import torch  # lazy: as in run

    from dnr_sweep import evaluation as ev
    from dnr_sweep.artifacts.model_folder import load_trained

    trained = load_trained(args.model, args.trial)
    config = trained.config
    dataset = trained.data.test if args.split == "test" else trained.data.val
    if len(dataset) == 0:  # type: ignore[arg-type]
        raise UserError(f"{trained.folder}: the {args.split} split is empty (data.val_size: 0); use --split test")
    pgd_cfg = config.attack.eval.pgd
    eps = pgd_cfg.eps if eps_override is None else eps_override
    fgsm_eps = config.attack.eval.fgsm.eps if eps_override is None else eps_override
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    evaluator = ev.Evaluator(
        trained.model, dataset, eps=eps, pgd_alpha=pgd_cfg.alpha if args.alpha is None else args.alpha,
        pgd_steps=pgd_cfg.steps, pgd_random_start=pgd_cfg.random_start, pgd_restarts=pgd_cfg.restarts,
        fgsm_eps=fgsm_eps, batch_size=args.batch_size or config.train.eval_batch_size or 256,
        limit=args.limit, seed=args.seed, device=device,
    )  # fmt: skip

    result: dict[str, Any] = evaluator.evaluate([spec.name for spec in specs])
    if args.curves:
        curves = evaluator.strength_curves(eps_values=curve_eps)
        curves_path = ev.write_strength_curves(curves, trained.folder)
    result["checks"] = [] if args.no_checks else ev.check_entries(evaluator)
    result["settings"] = {
        "model": str(trained.folder), "split": args.split, "n": evaluator.n, "eps": eps, "fgsm_eps": fgsm_eps,
        "pgd_alpha": evaluator.alpha, "pgd_steps": evaluator.steps, "pgd_random_start": evaluator.random_start,
        "pgd_restarts": evaluator.restarts, "seed": args.seed, "tolerance_pp": evaluator.tolerance,
    }  # fmt: skip
    out_path = ev.write_evaluation(result, trained.folder)

    if args.json:
        print(json.dumps(result))
        return 0
    s = result["settings"]
    print(f"{trained.folder}: {s['split']} split, {s['n']} images, eps {eps:.4g} (FGSM {fgsm_eps:.4g}), "
          f"PGD alpha {s['pgd_alpha']:.4g} x {s['pgd_steps']} steps")  # fmt: skip
    print(f"{'attack':<14}{'accuracy %':>11}")
    for spec in specs:
        print(f"{spec.name:<14}{result[spec.name]:>11.2f}")
    if result["checks"]:
        print("gradient-masking checks:")
        for check in result["checks"]:
            print(f"  {check['status']:<5} {check['name']:<18} {check['detail']}")
    if args.curves:
        print(f"attack-strength curves: {curves_path}")
    print(f"results: {out_path}")
    return 0
