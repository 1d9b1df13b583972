"""The schemas of Ray Tune 2.60's files that dnr-sweep reads, for :mod:`.reader`: a trial's ``result.json`` lines
and ``params.json``, and the experiment state (``experiment_state-*.json``: the controller's attributes, and one
entry per trial, a pair of JSON texts: the trial's attributes and its run metadata).

Tune's restore sets every key of the experiment state as an attribute of its controller, trial or run metadata
(``__dict__.update``), so a key of the wrong type, or one Tune never writes, breaks ``resume`` deep inside Ray.
Read with ``complete`` (:data:`.reader.COMPLETE`, what ``resume`` does), a state must hold the keys Tune reads
without a default and no key Tune does not write; read leniently (``status``), unknown keys are ignored and
every field may be missing. The pickles Tune embeds (hex text, ``CLOUDPICKLE_FALLBACK`` objects) are only
shaped here; :mod:`dnr_sweep.sweep.tune_state` screens what they hold.

A field declared without ``None`` in its type may be absent (Tune keeps its own value) but never null (Tune would
call a method on it). A result line is the run contract's Tune result (:func:`~.run_contract.tune_result`) plus
Tune's own keys; each figure follows :func:`.schemas.figure_problem`, other keys hold a plain value.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, Json, RootModel, ValidationInfo, model_validator
from pydantic_core import InitErrorDetails

from dnr_sweep.foundation import run_contract as rc
from dnr_sweep.foundation.bounds import MAX_EPOCHS
from dnr_sweep.foundation.reader import COMPLETE
from dnr_sweep.foundation.schemas import (
    AsTuple,
    Finite,
    KeyedFigures,
    NonNegative,
    PlainName,
    checked,
    figure_problem,
    is_figure,
    validated_together,
)

#: a trial's id: Tune's ``8c833_00000``; any name without a path separator or control character
TrialId = Annotated[str, checked(lambda s: 0 < len(s) <= 200 and not re.search(r"[/\\\x00-\x1f]", s),
                                 "a trial id (no '/', at most 200 characters)")]  # fmt: skip
#: a pickle Tune stores as hex text
HexPickle = Annotated[
    str, checked(lambda s: re.fullmatch(r"(?:[0-9a-f]{2})+", s) is not None, "a pickle as hex digits")
]
TrialStatus = Literal["PENDING", "RUNNING", "PAUSED", "TERMINATED", "ERROR"]


class ResultLine(KeyedFigures):
    """One line of a trial's ``result.json``: the epoch's figures (``this_epoch/...``), the selected epoch's, on
    the last line the run's result, and Tune's own keys. Any other key holds a plain value. A line whose epoch
    is unusable is skipped whole (its figures belong to no epoch)."""

    IDENTITY: ClassVar[tuple[str, ...]] = (rc.EPOCH_KEY,)

    epoch: Annotated[int, Field(ge=1, le=MAX_EPOCHS)] = None  # type: ignore[assignment]
    trial_id: TrialId = None  # type: ignore[assignment]
    config: dict[str, Any] = {}
    final: bool = False
    done: bool = False
    training_iteration: Annotated[int, Field(ge=0)] = 0
    iterations_since_restore: Annotated[int, Field(ge=0)] = 0
    timestamp: Finite = 0.0
    time_this_iter_s: NonNegative = 0.0
    time_total_s: NonNegative = 0.0
    time_since_restore: NonNegative = 0.0
    date: str = ""
    hostname: str = ""
    node_ip: str = ""
    pid: int = 0
    experiment_tag: str = ""
    checkpoint_dir_name: str | None = None
    should_checkpoint: bool = False

    @classmethod
    def extra_problem(cls, key: str, value: Any) -> str | None:
        name = key.removeprefix(rc.EPOCH_PREFIX)
        if is_figure(name):
            return figure_problem(name, value)
        plain = value is None or isinstance(value, str | bool | int | float)
        return None if plain else "a number, text, true, false or null"


class TrialParams(RootModel[dict[str, Any]]):
    """A trial folder's ``params.json``: the trial's sampled values by dotted config key."""

    model_config = ConfigDict(strict=True, frozen=True)


# ------------------------------------------------------------------------------------------------
# The experiment state


class TuneShape(BaseModel):
    """An object of Tune's experiment state. Leniently read, unknown keys are ignored; read ``complete``, a key
    outside the declared fields is refused and :attr:`REQUIRED_ON_RESUME` must be there."""

    model_config = ConfigDict(strict=True, frozen=True, extra="ignore", populate_by_name=True)
    #: the keys Tune's restore reads without a default (its other keys keep Tune's own value when absent)
    REQUIRED_ON_RESUME: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="wrap")
    @classmethod
    def _complete(cls, data: Any, handler: Callable[[Any], Any], info: ValidationInfo) -> Any:
        errors: list[Any] = []
        if isinstance(data, dict) and (info.context or {}).get(COMPLETE):
            declared = {field.alias or name for name, field in cls.model_fields.items()}
            errors += [InitErrorDetails(type="extra_forbidden", loc=(key,), input=data[key])
                       for key in data if key not in declared]  # fmt: skip
            errors += [InitErrorDetails(type="missing", loc=(key,), input=data)
                       for key in cls.REQUIRED_ON_RESUME if key not in data]  # fmt: skip
        return validated_together(cls.__name__, errors, handler, data)


class Embedded(TuneShape):
    """An object Tune could not write as JSON: ``{"_type": "CLOUDPICKLE_FALLBACK", "value": <hex pickle>}``."""

    model_config = ConfigDict(strict=True, frozen=True, extra="forbid", populate_by_name=True)

    type_: Literal["CLOUDPICKLE_FALLBACK"] = Field(alias="_type")
    value: HexPickle


class TrialState(TuneShape):
    """The first text of a trial entry: the ``Trial``'s attributes (its pickled ones as hex)."""

    REQUIRED_ON_RESUME = ("trainable_name", "trial_id", "status", "config", "placement_group_factory", "storage")

    trial_id: TrialId
    stub: bool = False
    trainable_name: str = ""
    storage: Embedded = None  # type: ignore[assignment]
    config: dict[str, Any] = {}
    unresolved_config: dict[str, Any] = Field({}, alias="_Trial__unresolved_config")
    evaluated_params: dict[str, Any] = {}
    experiment_tag: str = ""
    stopping_criterion: dict[str, Any] = {}
    setup_default_resource: bool = Field(True, alias="_setup_default_resource")
    default_placement_group_factory: HexPickle = Field(
        None, alias="_default_placement_group_factory")  # type: ignore[assignment]  # fmt: skip
    placement_group_factory: HexPickle = None  # type: ignore[assignment]
    log_to_file: Annotated[tuple[PlainName | None, PlainName | None], AsTuple] = (None, None)
    max_failures: Annotated[int, Field(ge=-1)] = 0
    default_result_or_future: None = Field(None, alias="_default_result_or_future")
    export_formats: list[str] = []
    status: TrialStatus = "PENDING"
    relative_logdir: PlainName | None = None
    trial_name_creator: Embedded | None = None
    trial_dirname_creator: Embedded | None = None
    custom_trial_name: str | None = None
    custom_dirname: PlainName | None = None
    restore_path: None = None  # a checkpoint to seed the trial from: dnr-sweep never sets one
    restore_checkpoint_result: Embedded | None = Field(None, alias="_restore_checkpoint_result")
    state_json: None = Field(None, alias="_state_json")
    results: HexPickle = None  # type: ignore[assignment]
    extra_arg: HexPickle = None  # type: ignore[assignment]
    resources: HexPickle = Field(None, alias="_resources")  # type: ignore[assignment]


class TrialMetadata(TuneShape):
    """The second text of a trial entry: the trial's run metadata (failures, its last result, metric summaries)."""

    start_time: Finite | None = None
    num_failures: Annotated[int, Field(ge=0)] = 0
    num_failures_after_restore: Annotated[int, Field(ge=0)] = 0
    error_filename: PlainName | None = None
    pickled_error_filename: PlainName | None = None
    last_result: ResultLine = None  # type: ignore[assignment]
    last_result_time: Annotated[float, checked(lambda v: v == v, "a time (minus infinite before any result)")] = 0.0
    metric_analysis: dict[str, dict[str, float | bool]] = {}
    n_steps: list[Annotated[int, Field(ge=1)]] = Field([5, 10], alias="_n_steps")
    metric_n_steps: dict[str, dict[str, Embedded]] = {}
    checkpoint_manager: Embedded = None  # type: ignore[assignment]


#: a trial entry: two JSON texts, the trial and its run metadata
TrialEntry = Annotated[tuple[Json[TrialState], Json[TrialMetadata]], AsTuple]


class RunnerData(TuneShape):
    """The controller's attributes (``TuneController.__getstate__``)."""

    REQUIRED_ON_RESUME = ("_session_str", "_start_time")

    session_str: PlainName = Field("", alias="_session_str")
    start_time: Finite = Field(0.0, alias="_start_time")
    earliest_stopping_actor: Annotated[float, checked(lambda v: v == v, "a time (infinite when none)")] = Field(
        0.0, alias="_earliest_stopping_actor")  # fmt: skip
    actor_cleanup_timeout: NonNegative = Field(0.0, alias="_actor_cleanup_timeout")
    actor_force_cleanup_timeout: NonNegative = Field(0.0, alias="_actor_force_cleanup_timeout")
    reuse_actors: bool = Field(False, alias="_reuse_actors")
    buffer_length: Annotated[int, Field(ge=1)] = Field(1, alias="_buffer_length")
    buffer_min_time_s: NonNegative = Field(0.0, alias="_buffer_min_time_s")
    buffer_max_time_s: NonNegative = Field(0.0, alias="_buffer_max_time_s")
    max_pending_trials: Annotated[int, Field(ge=1)] = Field(1, alias="_max_pending_trials")
    metric: str | None = Field(None, alias="_metric")
    total_time: NonNegative = Field(0.0, alias="_total_time")
    iteration: Annotated[int, Field(ge=0)] = Field(0, alias="_iteration")
    has_errored: bool = Field(False, alias="_has_errored")
    fail_fast: bool | Literal["RAISE"] = Field(False, alias="_fail_fast")
    print_trial_errors: bool = Field(True, alias="_print_trial_errors")
    cached_trial_decisions: dict[str, str] = Field({}, alias="_cached_trial_decisions")
    queued_trial_decisions: dict[str, str] = Field({}, alias="_queued_trial_decisions")
    should_stop_experiment: bool = Field(False, alias="_should_stop_experiment")
    stopper: Embedded = Field(None, alias="_stopper")  # type: ignore[assignment]
    checkpoint_period: Literal["auto"] | NonNegative = Field("auto", alias="_checkpoint_period")
    trial_checkpoint_config: Embedded = Field(None, alias="_trial_checkpoint_config")  # type: ignore[assignment]
    resumed: bool = Field(False, alias="_resumed")


class StateStats(TuneShape):
    start_time: Finite | None = None


class ExperimentState(TuneShape):
    """``experiment_state-*.json``: every trial Tune created, the controller's attributes, the session's start."""

    REQUIRED_ON_RESUME = ("trial_data", "runner_data")

    trial_data: list[TrialEntry]
    runner_data: RunnerData = None  # type: ignore[assignment]
    stats: StateStats | None = None


__all__ = ["Embedded", "ExperimentState", "HexPickle", "ResultLine", "RunnerData", "StateStats", "TrialEntry",
           "TrialId", "TrialMetadata", "TrialParams", "TrialState", "TrialStatus", "TuneShape"]  # fmt: skip
