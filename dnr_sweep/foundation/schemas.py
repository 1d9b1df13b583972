"""The schemas of the JSON files dnr-sweep writes and reads back, for :mod:`.reader`: ``sweep.json``,
``driver_end.json``, a trial's ``epochs.json``, ``evaluation.json``, ``attack_strength.json``, the data set's
verification record, the fetch journal and the lock record; and the rule every figure of the run contract
follows wherever it is stored (:func:`figure_problem`: its type, and its range where the contract fixes one:
accuracies in [0, 100], densities in [0, 1], compression >= 1, counts of epochs in [0, MAX_EPOCHS]). Ray Tune's
files are in :mod:`.tune_schemas`.

Types are strict (``"1"`` is text, ``true`` is no number); NaN stands for a figure that was not measured and
is allowed only there. What the files may hold beyond that is what their writers write: each schema accepts
exactly what a real run writes (``tests/test_reader.py`` reads a finished run without a single note).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from functools import cache
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    RootModel,
    ValidationError,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError, PydanticKnownError

from dnr_sweep.foundation import run_contract as rc
from dnr_sweep.foundation.bounds import MAX_EPOCHS

#: Table 2's pruning types (a run's ``pruning_type``): ``dnr.pruning``'s values
PRUNING_TYPES = ("irregular", "channel", "channel_group")


def problem(expected: str) -> PydanticCustomError:
    """A schema check's failure; :mod:`.reader` words it ``<field> is <value>, expected <expected>``."""
    return PydanticCustomError("shape", "expected {expected}", {"expected": expected})


def raise_together(title: str, errors: list[Any], exc: ValidationError | None) -> None:
    """Raise ``errors`` (``InitErrorDetails``) and those of ``exc`` as one :class:`ValidationError`; nothing when
    there are none. A check outside a model's fields (an undeclared key, a key the file lacks) so keeps its own
    location beside the fields' errors."""
    if exc is not None and not errors:
        raise exc
    for error in exc.errors() if exc is not None else []:
        errors.append(InitErrorDetails(type=_error_type(error), loc=error["loc"], input=error["input"],
                                       ctx=error.get("ctx", {})))  # fmt: skip
    if errors:
        raise ValidationError.from_exception_data(title, errors)


def validated_together(title: str, errors: list[Any], handler: Callable[[Any], Any], data: Any) -> Any:
    """``handler(data)`` (pydantic's own validation), its errors raised together with ``errors``."""
    try:
        model = handler(data)
    except ValidationError as exc:
        raise_together(title, errors, exc)
    raise_together(title, errors, None)
    return model


def _error_type(error: Any) -> Any:
    ctx = error.get("ctx")
    try:
        PydanticKnownError(error["type"], ctx)
    except KeyError:  # a schema's own check
        if error["type"] == "shape":
            return problem(ctx["expected"])
        return PydanticCustomError(error["type"], "{message}", {"message": error["msg"]})
    return error["type"]


def checked(test: Callable[[Any], bool], expected: str) -> AfterValidator:
    """A validator that passes the value when ``test`` holds, else fails with ``expected``."""

    def check(value: Any) -> Any:
        if not test(value):
            raise problem(expected)
        return value

    return AfterValidator(check)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _as_tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


#: a JSON list of fixed length; a model that checks more than its fields (:class:`KeyedFigures`) validates its
#: input as Python data, where a strict tuple accepts no list
AsTuple = BeforeValidator(_as_tuple)

Finite = Annotated[float, Field(allow_inf_nan=False)]
NonNegative = Annotated[float, Field(allow_inf_nan=False, ge=0)]
Accuracy = Annotated[float, Field(allow_inf_nan=False, ge=0, le=100)]
Sha256 = Annotated[str, checked(lambda s: re.fullmatch(r"[0-9a-f]{64}", s) is not None, "a SHA-256 (64 hex digits)")]
Md5 = Annotated[str, checked(lambda s: re.fullmatch(r"[0-9a-f]{32}", s) is not None, "an MD5 (32 hex digits)")]


def plain_name(name: str) -> bool:
    """A file or folder name inside its folder: no separator, not ``.`` or ``..``, no control character."""
    return bool(name) and not re.search(r"[/\\\x00-\x1f]", name) and name not in (".", "..")


PlainName = Annotated[str, checked(plain_name, "a file or folder name inside the folder (no '/', not '..')")]


class FileSchema(BaseModel):
    """A JSON object dnr-sweep writes: strict types, frozen; keys it never writes are ignored."""

    model_config = ConfigDict(strict=True, frozen=True, extra="ignore")


# ------------------------------------------------------------------------------------------------
# Figures of the run contract


@cache
def _figure_rule(name: str) -> tuple[Callable[[Any], bool], str] | None:
    """``(test, expected)`` for the figure ``name``; ``None`` when the run contract has no such figure."""
    nan = "or NaN when not measured"

    def choice(values: tuple[str, ...]) -> tuple[Callable[[Any], bool], str]:
        return (lambda v: v in values), "one of " + ", ".join(values)

    def ranged(lo: float, hi: float, text: str, *, infinite: bool = False) -> tuple[Callable[[Any], bool], str]:
        def test(v: Any) -> bool:
            return v is None or (_number(v) and (math.isnan(v) or (lo <= v <= hi and (infinite or math.isfinite(v)))))

        return test, f"{text} {nan}"

    def count(lo: int) -> tuple[Callable[[Any], bool], str]:
        test = lambda v: isinstance(v, int) and not isinstance(v, bool) and lo <= v <= MAX_EPOCHS  # noqa: E731
        return test, f"an integer in [{lo}, {MAX_EPOCHS}]"

    if name == "phase":
        return choice(rc.PHASES)
    if name == "selected_on":
        return choice(rc.SELECTION_SPLITS)
    if name == "select_metric":
        return choice((*rc.VAL_METRICS, *rc.TEST_SELECTION_METRICS))
    if name == "method":
        return choice(rc.METHODS)
    if name == "pruning_type":
        return choice(PRUNING_TYPES)
    if name == rc.MASKING_CHECKS_PASSED:
        return (lambda v: v is None or isinstance(v, bool) or (isinstance(v, float) and math.isnan(v))), "true or false"
    if name == "selected_epoch":
        test, text = count(1)
        return (lambda v: v is None or test(v)), f"{text}, or null before an epoch was selected"
    if name in ("epochs", rc.TRAIN_ADV_EPOCHS) or rc.is_phase_epochs_metric(name):
        return count(0)
    if name.endswith("_acc") and (name in rc.EPOCH_METRICS or rc.is_run_metric(name) or name == "train_acc"):
        return ranged(0, 100, "an accuracy in [0, 100] %")
    fractions = ("density", "mask_density", "channels_present", "prune_rate", *rc.METHOD_RUN_METRICS)
    if name in fractions or rc.is_layer_metric(name):
        return ranged(0, 1, "a fraction in [0, 1]")
    if name == "compression":
        return ranged(1, math.inf, "a compression >= 1 (infinite when no weight is left)", infinite=True)
    if name == rc.SPEEDUP_CPU:
        return ranged(0, math.inf, "a finite speedup > 0")
    if name in rc.EPOCH_METRICS or rc.is_run_metric(name):  # losses, rates, times, costs, counts
        return ranged(0, math.inf, "a finite number >= 0")
    return None


def figure_problem(name: str, value: Any) -> str | None:
    """What ``value`` should be to be the run-contract figure ``name``; ``None`` when it is that (or when the
    contract has no figure of that name: see :func:`is_figure`)."""
    rule = _figure_rule(name)
    if rule is None:
        return None
    test, expected = rule
    return None if test(value) else expected


def is_figure(name: str) -> bool:
    """A name the run contract gives a figure (an epoch metric, a run metric, a layer density)."""
    return _figure_rule(name) is not None


class KeyedFigures(BaseModel):
    """An object whose keys beyond the declared fields are figures: each checked by :meth:`extra_problem`, and
    a failure located at its key (so a lenient read leaves out that figure alone)."""

    model_config = ConfigDict(strict=True, frozen=True, extra="allow")

    @classmethod
    def extra_problem(cls, key: str, value: Any) -> str | None:
        """What the undeclared key ``key`` should hold, or ``None`` when ``value`` is fine."""
        return figure_problem(key, value)

    @model_validator(mode="wrap")
    @classmethod
    def _check_extras(cls, data: Any, handler: Callable[[Any], Any]) -> Any:
        errors: list[Any] = []
        if isinstance(data, dict):
            declared = {field.alias or name for name, field in cls.model_fields.items()}
            for key, value in data.items():
                if key not in declared:
                    expected = cls.extra_problem(key, value)
                    if expected is not None:
                        errors.append(InitErrorDetails(type=problem(expected), loc=(key,), input=value))
        return validated_together(cls.__name__, errors, handler, data)

    def as_dict(self) -> dict[str, Any]:
        """The fields the file held (declared and figures), as plain data."""
        return self.model_dump(by_alias=True, exclude_unset=True)


# ------------------------------------------------------------------------------------------------
# dnr-sweep's own files


class SweepFile(FileSchema):
    """``sweep.json``: the ``--set`` overrides of ``dnr-sweep run`` and the config's source and SHA-256. The
    overrides are one field: a sweep without one of them is another sweep, so no item is left out alone."""

    overrides: Annotated[list[Any], checked(lambda items: all(isinstance(i, str) for i in items),
                                            "a list of texts ('key=value', as given to --set)")]  # fmt: skip
    config_source: str | None = None
    config_sha256: Sha256 | None = None


class DriverEnd(FileSchema):
    """``driver_end.json``: the driver's last word, written once ``Tuner.fit`` returned and the tables were."""

    ended: Finite
    interrupted: bool


class EpochEntry(KeyedFigures):
    """One epoch of a trial's own record: its ``epoch`` and this epoch's figures (epoch metrics and layer
    densities only)."""

    epoch: Annotated[int, Field(ge=1, le=MAX_EPOCHS)]

    @classmethod
    def extra_problem(cls, key: str, value: Any) -> str | None:
        if key != "phase" and key not in rc.EPOCH_METRICS and not rc.is_layer_metric(key):
            return "no such field: a trial's epoch record holds 'epoch' and epoch metrics only"
        return figure_problem(key, value)


class EpochRecord(RootModel[list[EpochEntry]]):
    """``epochs.json``: a sweep trial's own record of its epochs, rewritten by the trial every epoch."""

    model_config = ConfigDict(strict=True, frozen=True)


class CheckEntry(FileSchema):
    """A gradient-masking check's verdict in ``evaluation.json``."""

    name: str
    status: Literal["pass", "warn"]
    detail: str


class EarlierFigure(FileSchema):
    """An attack measured by an earlier ``evaluate`` and not measured again, with its settings."""

    accuracy: Accuracy
    settings: dict[str, Any] | None = None


class Evaluation(KeyedFigures):
    """``evaluation.json``: ``{attack: accuracy %}``, the checks, the settings, figures kept from earlier calls."""

    checks: list[CheckEntry] = []
    settings: dict[str, Any] | None = None
    earlier: dict[str, EarlierFigure] = {}

    @classmethod
    def extra_problem(cls, key: str, value: Any) -> str | None:
        ok = _number(value) and not math.isnan(value) and 0 <= value <= 100
        return None if ok else "an attack's accuracy in [0, 100] %"

    def accuracies(self) -> dict[str, float]:
        return dict(self.model_extra or {})


def _point(key: str) -> bool:
    try:
        value = float(key)
    except ValueError:
        return False
    return math.isfinite(value) and value >= 0


CurveKey = Annotated[str, checked(_point, "a number >= 0 as text (PGD steps or eps)")]


class AttackStrength(FileSchema):
    """``attack_strength.json``: accuracy (%) by PGD steps and by eps (Fig. 4)."""

    model_config = ConfigDict(strict=True, frozen=True, extra="forbid")

    steps: dict[CurveKey, Accuracy] = {}
    eps: dict[CurveKey, Accuracy] = {}

    def curves(self) -> dict[str, dict[float, float]]:
        return {
            "steps": {float(k): v for k, v in self.steps.items()},
            "eps": {float(k): v for k, v in self.eps.items()},
        }


def _relative(name: str) -> bool:
    parts = name.split("/")
    return bool(name) and not name.startswith("/") and all(part not in ("", ".", "..") for part in parts)


class DataRecord(FileSchema):
    """A data set folder's verification record: each checked file's size and mtime (ns) when last verified."""

    dataset: str
    archive_md5: Md5
    files: dict[Annotated[str, checked(_relative, "a path inside the data set folder")],
                Annotated[tuple[Annotated[int, Field(ge=0)], int], AsTuple]]  # fmt: skip


class FetchJournal(FileSchema):
    """A fetch's journal: the one work folder it made (removed by the next fetch if it died)."""

    made: list[str] = []
    pid: int | None = None


class ReportManifest(FileSchema):
    """A report folder's manifest (``.dnr-sweep-report.json``): its kind, its runs and the files it wrote."""

    kind: Literal["report", "comparison"]
    runs: list[str]
    files: list[str]


class ExportSummary(FileSchema):
    """What ``dnr-sweep export`` writes beside ``FILE`` (``FILE.json``); only what tells it apart is checked."""

    file: str
    params_before: int


class LockRecord(FileSchema):
    """What a folder lock's holder wrote into the lock file: who holds it."""

    host: str
    pid: int
    command: str
    since: str


__all__ = ["PRUNING_TYPES", "AsTuple", "AttackStrength", "CheckEntry", "DataRecord", "DriverEnd", "EpochEntry",
           "EpochRecord", "Evaluation", "ExportSummary", "FetchJournal", "FileSchema", "KeyedFigures", "LockRecord", "PlainName", "ReportManifest",
           "SweepFile", "checked", "figure_problem", "is_figure", "plain_name", "problem", "raise_together", "validated_together"]  # fmt: skip
