"""Typed configuration of the DGSR model: the one place its defaults live."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal


def from_mapping(cls: Any, values: dict[str, Any] | None, section: str) -> Any:
    """``cls(**values)``, naming unknown keys and the valid ones (YAML typos fail at once)."""
    values = dict(values or {})
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in dgsr.{section}; valid keys: {sorted(known)}")
    return cls(**values)


Readout = Literal["default", "paper"]


@dataclass(frozen=True)
class ModelConfig:
    """What defines the network: shapes, neighbourhood sizes and optional parts.

    The paper uses 50 items per session, 50 sessions per item and 3 layers; 20/10/2 keeps CPU
    training at OTTO scale affordable (docs/model.md lists every deviation).
    """

    embedding_dim: int = 64
    num_layers: int = 2  # DGRN layers = hops of the sampled subgraph
    item_max_length: int = 20  # a session's last items before the cut (paper: 50)
    user_max_length: int = 10  # an item's last sessions before the cut (paper: 50)
    context_window: tuple[int, int] = (2, 2)  # events before/after an edge that define a neighbour session
    #: The paper's neighbourhood: an item's neighbours are distinct sessions other than the sample's
    #: own, each at its latest event (else an item's latest events, whatever their session).
    distinct_sessions: bool = False
    dropout: float = 0.1
    attn_dropout: float | None = None  # None = same as dropout
    readout_last_item: bool = True
    #: "paper": the reference code's readout (layers 1..L and the last item's updated state, no bias);
    #: "default": layers 0..L and the last item's raw embedding, with a bias.
    readout: Readout = "default"
    #: The reference code's weights: per layer one matrix per node type, used as message and as query,
    #: and no separate short-term query matrix (models/dgsr.py gives the equations).
    tie_weights: bool = False
    attention: Literal["dense", "segment"] = "dense"
    type_heads: bool = True  # one head per event type: a clicks, a carts and an orders list
    repeat_bonus: bool = True  # learned bonus for the session's own earlier items
    history_length: int | None = 100  # ... among its last events (None: its hop-1 items)
    #: Learned co-visitation bonus for up to this many new items per sample (0 = off): the items in the
    #: context windows of the neighbour sessions' events on the session's items, by how recent the
    #: session item and which side of the window (needs num_layers >= 2 and a context window).
    neighbour_items: int = 0
    sparse_embedding: bool = False  # sparse item-table gradients + SparseAdam (CPU, big catalogues)

    def __post_init__(self) -> None:
        if self.num_layers < 1:
            raise ValueError("model.num_layers must be >= 1")
        if min(self.embedding_dim, self.item_max_length, self.user_max_length) < 1:
            raise ValueError("model.embedding_dim, item_max_length and user_max_length must be >= 1")
        if len(self.context_window) != 2 or min(self.context_window) < 0:
            raise ValueError("model.context_window must be two non-negative ints (before, after)")
        if self.readout not in ("default", "paper"):
            raise ValueError(f"model.readout must be 'default' or 'paper', got {self.readout!r}")
        if self.neighbour_items < 0:
            raise ValueError(f"model.neighbour_items must be >= 0, got {self.neighbour_items}")
        if self.neighbour_items and (self.num_layers < 2 or sum(self.context_window) == 0):
            raise ValueError("model.neighbour_items needs num_layers >= 2 and a non-empty context_window")
        if self.attention not in ("dense", "segment"):
            raise ValueError(f"model.attention must be 'dense' or 'segment', got {self.attention!r}")
        object.__setattr__(self, "context_window", tuple(int(x) for x in self.context_window))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["context_window"] = list(self.context_window)
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> ModelConfig:
        return from_mapping(cls, values, "model")

    def with_(self, **changes: Any) -> ModelConfig:
        return replace(self, **changes)
