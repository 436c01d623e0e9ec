"""DGSR training configuration: one flat dataclass, easy to log as MLflow params and to hash for resume."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal

#: Fields that change how a run executes but not what it computes, so a checkpoint written under one
#: value may be resumed under another (e.g. more epochs after an interruption, more workers).
RUNTIME_FIELDS: frozenset[str] = frozenset({"epochs", "num_workers", "progress", "device", "eval_batch_size"})


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of the DGSR model, its loss and its training loop (defaults: the OTTO run)."""

    # model
    embedding_dim: int = 64
    k_hop: int = 2
    item_max_length: int = 20  # paper: 50; 20/10 keeps 2-core CPU training near 5k samples/s
    user_max_length: int = 10  # paper: 50
    context_window: tuple[int, int] = (2, 2)
    dropout: float = 0.1
    attn_dropout: float | None = None  # None = same as dropout
    readout_last_item: bool = True
    type_heads: bool = True  # one head per event type (clicks / carts / orders), three candidate lists
    repeat_bonus: bool = True  # learned score bonus for the session's own earlier items (docs/model.md)
    history_length: int = 100  # how many of the session's last events the repeat bonus looks at
    # loss weight of a sample by its target's event type (clicks, carts, orders); typed samples only
    type_loss_weights: tuple[float, float, float] = (1.0, 1.0, 1.0)
    attention: Literal["dense", "segment"] = "dense"
    # loss
    loss: Literal["sampled", "full"] = "sampled"
    num_negatives: int = 2048
    negative_alpha: float = 0.75
    negative_uniform_mix: float = 0.1
    in_batch_negatives: bool = True
    #: Sparse gradients for the item table + SparseAdam on it (no weight decay there). For CPU training
    #: on big catalogues: a dense gradient + AdamW pass over OTTO's 1.86M x 64 table costs ~0.7 s per
    #: step on 2 cores. Needs loss="sampled". On GPU dense is cheap (~ms) and the default.
    sparse_embedding: bool = False
    # optimisation
    batch_size: int = 512
    lr: float = 1e-3
    weight_decay: float = 1e-5
    optimizer: Literal["adamw", "adam"] = "adamw"  # "adam": L2 penalty in the gradient, as the paper
    grad_clip: float | None = 5.0
    epochs: int = 10
    max_train_samples_per_epoch: int | None = None  # None = all training samples every epoch
    # evaluation / early stopping
    patience: int = 2
    eval_every: int = 1
    eval_k: int = 20
    eval_batch_size: int | None = None  # None = batch_size
    top_k: int = 50
    # execution
    num_workers: int = 0
    seed: int = 42
    device: str = "auto"  # "auto" = CUDA when available, else CPU
    amp: bool = True  # mixed precision, CUDA only
    progress: bool = True  # tqdm bars (also off when stderr is not a terminal)

    def __post_init__(self) -> None:
        if self.k_hop < 1:
            raise ValueError("k_hop must be >= 1")
        if min(self.embedding_dim, self.item_max_length, self.user_max_length, self.batch_size) < 1:
            raise ValueError("embedding_dim, item_max_length, user_max_length and batch_size must be >= 1")
        if len(self.context_window) != 2 or min(self.context_window) < 0:
            raise ValueError("context_window must be two non-negative ints (before, after)")
        if self.loss not in ("sampled", "full"):
            raise ValueError(f"loss must be 'sampled' or 'full', got {self.loss!r}")
        if self.sparse_embedding and self.loss != "sampled":
            raise ValueError("sparse_embedding needs loss='sampled' (the full softmax touches every row)")
        if self.optimizer not in ("adamw", "adam"):
            raise ValueError(f"optimizer must be 'adamw' or 'adam', got {self.optimizer!r}")
        if self.attention not in ("dense", "segment"):
            raise ValueError(f"attention must be 'dense' or 'segment', got {self.attention!r}")
        if self.epochs < 0 or self.patience < 1 or self.eval_every < 1:
            raise ValueError("need epochs >= 0, patience >= 1, eval_every >= 1")
        # YAML gives lists; keep the dataclass hashable and comparable.
        object.__setattr__(self, "context_window", tuple(int(x) for x in self.context_window))
        object.__setattr__(self, "type_loss_weights", tuple(float(x) for x in self.type_loss_weights))
        if len(self.type_loss_weights) != 3 or min(self.type_loss_weights) <= 0:
            raise ValueError("type_loss_weights must be three positive weights (clicks, carts, orders)")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-compatible) of all fields."""
        out = asdict(self)
        out["context_window"] = list(self.context_window)
        out["type_loss_weights"] = list(self.type_loss_weights)
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a (YAML/JSON) mapping; unknown keys raise, naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s) {unknown}; known: {sorted(known)}")
        return cls(**values)

    def with_(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed."""
        return replace(self, **changes)

    def config_hash(self) -> str:
        """Hash of everything that determines the training result (not :data:`RUNTIME_FIELDS`)."""
        relevant = {k: v for k, v in self.to_dict().items() if k not in RUNTIME_FIELDS}
        return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]
