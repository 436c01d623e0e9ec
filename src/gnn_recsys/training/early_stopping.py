"""Early stopping as a pure function of the validation history."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StopState:
    """Where the validation curve stands: the best value, its epoch, evaluations since it."""

    best_metric: float | None = None
    best_epoch: int = 0
    stale: int = 0
    stop: bool = False


def early_stopping(state: StopState, epoch: int, metric: float, patience: int) -> StopState:
    """The state after evaluating ``metric`` (higher is better) at ``epoch``.

    An evaluation that does not beat the best so far is *stale*; ``patience`` stale evaluations in a
    row stop training. A NaN never improves.
    """
    if state.best_metric is None or metric > state.best_metric:
        return StopState(best_metric=metric, best_epoch=epoch, stale=0, stop=False)
    stale = state.stale + 1
    return StopState(state.best_metric, state.best_epoch, stale, stale >= patience)
