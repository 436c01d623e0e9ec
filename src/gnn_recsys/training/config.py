"""Typed configuration of a DGSR fit: one dataclass per concern, the only place defaults live.

``conf/base/parameters_training.yml`` mirrors these sections (``dgsr.model``, ``dgsr.loss``,
``dgsr.train``, ``dgsr.loader``); a test checks the two agree.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from gnn_recsys.loader.loaders import LoaderConfig
from gnn_recsys.models.config import ModelConfig, from_mapping
from gnn_recsys.models.loss import LossConfig

#: Train fields that change how a run executes but not what it computes: a checkpoint written under
#: one value resumes under another (e.g. more epochs after an interruption, another device).
RUNTIME_FIELDS: frozenset[str] = frozenset({"max_epochs", "progress", "device", "eval_batch_size"})


ItemInit = Literal["normal", "cooccurrence"]


@dataclass(frozen=True)
class TrainConfig:
    """The optimisation loop: how long, how fast, when to stop.

    Training length follows the data: an epoch is at most ``samples_per_epoch`` samples (drawn anew
    each epoch), the learning rate warms up over ``warmup_steps`` and is multiplied by ``lr_decay``
    after every evaluation that does not improve validation recall, and training stops after
    ``patience`` such evaluations, after ``max_epochs`` epochs or after ``max_samples`` samples,
    whichever comes first. Before ``min_steps`` optimiser steps a plateau does nothing (the best
    weights are still kept), so a 10k-event dataset (a few steps per epoch) trains long enough.
    """

    batch_size: int = 512
    lr: float = 1e-3
    weight_decay: float = 1e-5
    optimizer: Literal["adamw", "adam"] = "adamw"  # "adam": L2 penalty in the gradient, as the paper
    grad_clip: float | None = 5.0
    #: learning rate of the bonus priors (repeat, co-visitation) relative to ``lr``, without weight
    #: decay: a handful of logits that must move by O(1), where Adam moves each by ~lr per step
    prior_lr_scale: float = 1.0
    max_epochs: int = 100
    samples_per_epoch: int | None = 500_000  # None = every training sample every epoch
    max_samples: int | None = None  # total training budget in samples (None = no cap)
    warmup_steps: int = 100
    lr_decay: float = 0.5
    patience: int = 2
    #: plateaus neither decay nor stop before this many optimiser steps: a small dataset's epoch is a
    #: few steps, and its first flat validation values are the warm-up, not convergence
    min_steps: int = 1000
    #: validate, keep and return an exponential moving average of the weights, updated after every
    #: step with this decay (``None``: the weights themselves); early steps use
    #: ``min(ema_decay, (1 + step) / (10 + step))``, so the average does not start as the random init
    ema_decay: float | None = 0.99
    #: the item table's starting rows: ``normal`` (random) or ``cooccurrence`` (the leading singular
    #: vectors of the training graph's PPMI over events at most ``item_init_window`` apart in a
    #: session, :mod:`gnn_recsys.graph.cooccurrence`); a warm start keeps its weights either way
    item_init: ItemInit = "cooccurrence"
    item_init_window: int = 2
    item_init_max_events: int | None = 20_000_000  # cooccurrence: count the last sessions only (memory)
    eval_k: int = 20
    eval_batch_size: int | None = None  # None = batch_size
    seed: int = 42
    device: str = "auto"  # "auto" = CUDA when available, else CPU
    amp: bool = True  # mixed precision, CUDA only
    progress: bool = True  # progress bars (only when stderr is a terminal)

    def __post_init__(self) -> None:
        if (
            self.batch_size < 1
            or self.lr < 0
            or self.max_epochs < 0
            or self.patience < 1
            or self.min_steps < 0
            or self.prior_lr_scale <= 0
        ):
            raise ValueError(
                "train: need batch_size >= 1, lr >= 0, max_epochs >= 0, patience >= 1, min_steps >= 0, "
                "prior_lr_scale > 0"
            )
        if self.samples_per_epoch is not None and self.samples_per_epoch < 1:
            raise ValueError("train.samples_per_epoch must be >= 1 or null")
        if self.item_init not in ("normal", "cooccurrence"):
            raise ValueError(f"train.item_init must be 'normal' or 'cooccurrence', got {self.item_init!r}")
        if self.item_init_window < 1:
            raise ValueError(f"train.item_init_window must be >= 1, got {self.item_init_window}")
        if self.item_init_max_events is not None and self.item_init_max_events < 1:
            raise ValueError(
                f"train.item_init_max_events must be >= 1 or null, got {self.item_init_max_events}"
            )
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"train.ema_decay must be in (0, 1) or null, got {self.ema_decay}")
        if not 0.0 < self.lr_decay <= 1.0:
            raise ValueError(f"train.lr_decay must be in (0, 1], got {self.lr_decay}")
        if self.optimizer not in ("adamw", "adam"):
            raise ValueError(f"train.optimizer must be 'adamw' or 'adam', got {self.optimizer!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> TrainConfig:
        return from_mapping(cls, values, "train")


RefitMode = Literal["warm_start", "from_scratch"]
WarmRate = Literal["base", "local"]


@dataclass(frozen=True)
class RefitConfig:
    """The submission model (section ``dgsr.refit``): DGSR trained again on the full data.

    The local model never sees the local test period's labels nor the test file's prefixes as
    targets; the model that scores the test file should. With ``enabled`` it is trained on the full
    graph (train file + test file prefixes, :func:`~gnn_recsys.loader.samples.refit_samples`), with
    no validation (there are no labels): ``warm_start`` continues from the local model's weights
    for ``epochs`` epochs (each at most ``train.samples_per_epoch`` samples), at ``train.lr`` after a
    fresh warm-up (``warm_rate: base``) or at the rate the local run had reached at its best epoch
    (``warm_rate: local``, measured worse); ``from_scratch`` trains anew for as many epochs as
    the local early stopping chose, replaying its learning-rate decays. ``recent_days`` keeps only
    the samples cut in the last days of the full data (e.g. the local test period plus the test
    file's), what the local model has not trained on. ``enabled: false``: the submission uses the
    local model.
    """

    enabled: bool = True
    mode: RefitMode = "from_scratch"  # measured best on the development set (docs/model.md)
    epochs: int = 5  # warm_start: epochs on the full data
    warm_rate: WarmRate = "base"  # warm_start: train.lr (base) or the local run's rate at its best epoch
    recent_days: float | None = None  # only samples cut in the full data's last days (None = all)
    checkpoint_dir: str | None = "data/06_models/dgsr_refit_checkpoints"  # never the local model's

    def __post_init__(self) -> None:
        if self.mode not in ("warm_start", "from_scratch"):
            raise ValueError(f"refit.mode must be 'warm_start' or 'from_scratch', got {self.mode!r}")
        if self.warm_rate not in ("base", "local"):
            raise ValueError(f"refit.warm_rate must be 'base' or 'local', got {self.warm_rate!r}")
        if self.epochs < 1:
            raise ValueError(f"refit.epochs must be >= 1, got {self.epochs}")
        if self.recent_days is not None and self.recent_days <= 0:
            raise ValueError(f"refit.recent_days must be > 0 or null, got {self.recent_days}")

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> RefitConfig:
        return from_mapping(cls, values, "refit")


_SECTIONS = {"model": ModelConfig, "loss": LossConfig, "train": TrainConfig, "loader": LoaderConfig}


@dataclass(frozen=True)
class FitConfig:
    """Everything :func:`~gnn_recsys.training.fit.train_dgsr` needs, one section per concern."""

    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    loader: LoaderConfig = field(default_factory=LoaderConfig)

    def __post_init__(self) -> None:
        if self.model.sparse_embedding and self.loss.kind == "full":
            raise ValueError("model.sparse_embedding needs loss.kind 'sampled' or 'auto'")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> FitConfig:
        """From the ``dgsr`` parameters (sections ``model``, ``loss``, ``train``, ``loader``; others ignored)."""
        return cls(**{name: section.from_dict(values.get(name)) for name, section in _SECTIONS.items()})

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {name: getattr(self, name).to_dict() for name in _SECTIONS}

    def with_(self, **sections: dict[str, Any]) -> FitConfig:
        """A copy with some fields changed, e.g. ``config.with_(train={"max_epochs": 2})``."""
        unknown = sorted(set(sections) - set(_SECTIONS))
        if unknown:
            raise ValueError(f"unknown config section(s) {unknown}; sections: {sorted(_SECTIONS)}")
        return replace(self, **{name: replace(getattr(self, name), **v) for name, v in sections.items()})

    def config_hash(self) -> str:
        """Hash of everything that determines the result (not the loader, nor :data:`RUNTIME_FIELDS`)."""
        relevant = {
            "model": self.model.to_dict(),
            "loss": self.loss.to_dict(),
            "train": {k: v for k, v in self.train.to_dict().items() if k not in RUNTIME_FIELDS},
        }
        return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]
