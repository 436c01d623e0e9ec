"""The submission model: DGSR trained again on the full data, after the local run chose its length.

The local model is fitted on the local split so that its score can be trusted; the test file is
better served by a model that has also seen the local test period and the test file's prefixes as
targets. There are no labels to validate that second training on, so its length and learning rate
come from the local run's history (:func:`local_schedule`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from gnn_recsys.data.schema import MS_PER_DAY
from gnn_recsys.loader.samples import SampleSet
from gnn_recsys.training.config import FitConfig, RefitConfig
from gnn_recsys.training.early_stopping import StopState, early_stopping
from gnn_recsys.training.fit import EpochCallback, TrainResult, train_dgsr

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LocalSchedule:
    """What the local run's validation decided: its best epoch and the epochs after which it decayed."""

    best_epoch: int
    decay_after: tuple[int, ...]


def local_schedule(history: dict[str, Any], config: FitConfig) -> LocalSchedule:
    """Replay the local run's early stopping on its recorded validation recall.

    The fit loop decays the learning rate after every stale evaluation that does not stop training;
    the same :func:`~gnn_recsys.training.early_stopping.early_stopping` over the history's metric
    gives those epochs. A history without validation decayed never; its best epoch is its last.
    """
    epochs = history.get("epochs") or []
    if not epochs:
        raise ValueError(
            "the local model artifact holds no training history (written before the refit existed?): "
            "retrain dgsr_model or set dgsr.refit.enabled: false"
        )
    metric = f"val_recall@{config.train.eval_k}"
    if any(metric not in e for e in epochs):
        return LocalSchedule(best_epoch=int(history.get("best_epoch") or len(epochs)), decay_after=())
    state, decays = StopState(), []
    for e in epochs:
        epoch = int(e["epoch"])
        state = early_stopping(state, epoch, float(e[metric]), config.train.patience)
        if state.best_epoch != epoch and not state.stop:
            decays.append(epoch)
    best = int(history.get("best_epoch") or state.best_epoch)
    return LocalSchedule(best_epoch=best, decay_after=tuple(d for d in decays if d < best))


def recent_samples(graph: Any, samples: SampleSet, days: float) -> SampleSet:
    """The samples cut in the last ``days`` days of ``graph`` (its latest event's time minus ``days``)."""
    since = int(np.asarray(graph.ev_ts).max()) - int(days * MS_PER_DAY)
    recent = samples.subset(np.flatnonzero(samples.cut_ts >= since))
    if len(recent) == 0:
        raise ValueError(f"refit.recent_days={days} leaves no sample to train on")
    return recent


def refit_dgsr(
    graph: Any,
    samples: SampleSet,
    config: FitConfig,
    refit: RefitConfig,
    *,
    history: dict[str, Any],
    local_state: dict[str, Tensor],
    on_epoch_end: EpochCallback | None = None,
    checkpoint_dir: str | Path | None = None,
) -> TrainResult:
    """Train the submission model on ``samples`` over ``graph`` (both from the full data), no validation.

    ``warm_start``: ``local_state`` trained further for ``refit.epochs`` epochs (fresh optimiser
    state), at ``train.lr`` after the warm-up (``warm_rate: base``) or at the local run's rate at its
    best epoch (``local``: decayed as often from the start). ``from_scratch``: a fresh model for the
    local run's best number of epochs, with its decays at the same epochs.
    """
    schedule = local_schedule(history, config)
    if refit.recent_days is not None:
        samples = recent_samples(graph, samples, refit.recent_days)
    if refit.mode == "warm_start":
        epochs, init = refit.epochs, local_state
        # The local run's final rate (every decay before the first epoch) learns the new data too
        # slowly: on the development set 3 epochs at it gave 0.6856 submission recall, at train.lr 0.6897.
        decay_after = (0,) * len(schedule.decay_after) if refit.warm_rate == "local" else ()
    else:
        epochs, init, decay_after = schedule.best_epoch, None, schedule.decay_after
    logger.info(
        "DGSR refit (%s): %d epoch(s) on %d samples, learning-rate decays after epochs %s",
        refit.mode,
        epochs,
        len(samples),
        list(decay_after),
    )
    return train_dgsr(
        graph,
        samples,
        None,
        config.with_(train={"max_epochs": epochs}),
        checkpoint_dir=checkpoint_dir,
        on_epoch_end=on_epoch_end,
        init_state=init,
        lr_decay_after=decay_after,
    )
