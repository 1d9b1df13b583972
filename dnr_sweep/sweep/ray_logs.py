"""Ray Tune's own log lines that would mislead a dnr-sweep user, filtered while ``Tuner.fit`` runs.

- Tune's "Experiment has been interrupted ... Resume experiment with: ``Tuner.restore(path=..., trainable=...)``"
  after Ctrl-C: Python advice for Ray's API, printed just before dnr-sweep's own ``dnr-sweep resume RUN_DIR`` line.
  The record is also the only trace of the interrupt (Ray 2.60, ``ray/tune/tune.py``: on SIGINT Tune stops
  gracefully, marks the stopped trials terminated and returns normally), so the filter notes it.
- "Failed to fetch metrics for N trial(s): - <trial>: FileNotFoundError(...)" (``ray/tune/analysis/
  experiment_analysis.py``), the ``ResultGrid`` reading trials that never reported an epoch (pending when the
  sweep was interrupted, or failed before their first epoch): dnr-sweep's tables and messages cover those
  trials (``status``, the failed-trial list), and the exception text reads like a crash.
- "Trial ...: Error handling checkpoint ..." with a ``FileNotFoundError`` "Path not found" traceback
  (``ray/tune/execution/tune_controller.py``): after ``resume``, Tune's restored list of a trial's checkpoints
  may name one its earlier driver deleted before it died (its snapshot lags), and deleting it again raises.
  Tune has already dropped it from its list and the trial goes on; nothing is lost.

The filters sit on those loggers (a logger's filter runs before any handler sees the record), only during
``fit``; every other Ray line passes unchanged.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

#: the loggers (``logging.getLogger(__name__)`` of the Ray modules above) the filter is put on
RAY_LOGGERS = ("ray.tune.tune", "ray.tune.analysis.experiment_analysis", "ray.tune.execution.tune_controller")


class RayLogFilter(logging.Filter):
    """Drops the lines above; ``interrupted`` says whether Tune reported an interrupt."""

    def __init__(self) -> None:
        super().__init__()
        self.interrupted = False

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "has been interrupted" in message:
            self.interrupted = True
        if "Tuner.restore(" in message:
            return False
        exc = record.exc_info[1] if record.exc_info else None
        if (
            "Error handling checkpoint" in message
            and isinstance(exc, FileNotFoundError)
            and "Path not found" in str(exc)
        ):
            return False
        return not ("Failed to fetch metrics for" in message and "FileNotFoundError" in message)


@contextlib.contextmanager
def filtered_ray_logs() -> Iterator[RayLogFilter]:
    """The filter on Ray's loggers for the ``with`` block (``Tuner.fit`` and reading its results)."""
    noise = RayLogFilter()
    loggers = [logging.getLogger(name) for name in RAY_LOGGERS]
    for logger in loggers:
        logger.addFilter(noise)
    try:
        yield noise
    finally:
        for logger in loggers:
            logger.removeFilter(noise)
