"""What a target's runner is doing and how its last cycles went, for the REST API and status page.

The metrics say the same in numbers for Prometheus; this keeps what numbers cannot carry (the
last error's text, the running epoch's losses) as plain values that the event loop reads and the
runner's threads replace whole (each field assignment is atomic, so no lock is needed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tsf_adapter.core.errors import TsfAdapterError

if TYPE_CHECKING:
    from tsf_adapter.forecast.neural.state import EpochProgress  # torch: only where a model trains


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a finished cycle (a training or a forecast) went: when, how long, and the error if any."""

    at: float  # unix seconds, when it ended
    duration_s: float
    error: str | None = None
    detail: str = ""  # e.g. "lstm: early_stopping after 5 epochs (best 3)"


@dataclass(slots=True)
class RunnerStatus:
    """One target's state, replaced field by field by its runner."""

    training_since: float | None = None  # unix seconds; None when no training runs
    # The running training's latest finished epoch, and the network's name (auto trains several).
    epoch: tuple[str, EpochProgress] | None = None
    last_training: Outcome | None = None
    last_forecast: Outcome | None = None
    # When the model in use was trained (also set when a saved model is loaded).
    trained_at: float | None = None


def describe(exc: BaseException) -> str:
    """An exception on one line, as the status shows it: our own errors by their message, others
    with their type (a bug's ``KeyError: 'x'`` says nothing without it)."""
    text = " ".join(str(exc).split())
    return text if isinstance(exc, TsfAdapterError) else f"{type(exc).__name__}: {text}"
