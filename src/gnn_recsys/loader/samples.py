"""Training and validation samples: which session is cut where, and which item it should predict next.

A sample ``(session, cut_ts, target[, target_type])`` sees only events with ``ts < cut_ts``.
:func:`make_samples` turns a graph and the local test sessions into the training and validation
sets the pipeline trains on.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from gnn_recsys.graph.sampler import future_target_samples, training_sample_events
from gnn_recsys.models.batch import NUM_EVENT_TYPES
from gnn_recsys.models.config import from_mapping

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SampleSet:
    """Training / validation samples: predict item ``target`` for ``session`` from events before ``cut_ts``.

    ``target_type`` (optional) is the event type of the target event (0 clicks, 1 carts, 2 orders); a
    model with type heads trains each sample through the head of its target's type.
    """

    session: np.ndarray  # int64 session index
    cut_ts: np.ndarray  # int64 Unix ms
    target: np.ndarray  # int64 item index
    target_type: np.ndarray | None = None  # int64 event type code of the target event

    def __post_init__(self) -> None:
        n = len(self.session)
        lengths = {name: len(getattr(self, name)) for name in self._columns()}
        if any(length != n for length in lengths.values()):
            raise ValueError(f"SampleSet arrays differ in length: {lengths}")
        for name in self._columns():
            object.__setattr__(self, name, np.asarray(getattr(self, name), dtype=np.int64))

    def _columns(self) -> tuple[str, ...]:
        return ("session", "cut_ts", "target") + (("target_type",) if self.target_type is not None else ())

    def __len__(self) -> int:
        return len(self.session)

    def subset(self, index: np.ndarray | slice) -> SampleSet:
        return SampleSet(*(getattr(self, name)[index] for name in self._columns()))

    @classmethod
    def from_events(cls, graph: Any, events: np.ndarray) -> SampleSet:
        """Typed next-event samples: each event predicted from everything before its own time."""
        return cls.from_cut_events(graph, events, events)

    @classmethod
    def from_cut_events(cls, graph: Any, cut_events: np.ndarray, target_events: np.ndarray) -> SampleSet:
        """Typed samples predicting ``target_events`` from everything before ``cut_events``' times."""
        target_events = np.asarray(target_events, dtype=np.int64)
        return cls(
            graph.ev_session()[target_events],
            np.asarray(graph.ev_ts)[np.asarray(cut_events, dtype=np.int64)],
            np.asarray(graph.ev_item)[target_events],
            np.asarray(graph.ev_type)[target_events],
        )

    @classmethod
    def concat(cls, parts: list[SampleSet]) -> SampleSet:
        columns = parts[0]._columns()
        return cls(*(np.concatenate([getattr(part, name) for part in parts]) for name in columns))

    @classmethod
    def from_frame(cls, frame: pl.DataFrame) -> SampleSet:
        """From integer columns ``session`` (index), ``cut_ts``, ``target`` (item index), [``target_type``]."""
        missing = [c for c in ("session", "cut_ts", "target") if c not in frame.columns]
        if missing:
            raise ValueError(f"sample frame lacks column(s) {missing}; has {frame.columns}")
        columns = [c for c in ("session", "cut_ts", "target", "target_type") if c in frame.columns]
        for c in columns:
            nulls = frame[c].null_count()
            if nulls:
                raise ValueError(
                    f"sample frame column {c!r} has {nulls} null(s), first at row {frame[c].is_null().arg_max()}"
                )
        return cls(*(frame[c].to_numpy() for c in columns))

    def to_frame(self) -> pl.DataFrame:
        return pl.DataFrame({name: getattr(self, name) for name in self._columns()})

    def validate(self, graph: Any, name: str = "samples") -> None:
        """Raise ``ValueError`` naming the first sample (row) whose session, target or type is out of range."""
        checks = {
            "session": (self.session < 0) | (self.session >= graph.num_sessions),
            "target": (self.target < 0) | (self.target >= graph.num_items),
        }
        if self.target_type is not None:
            checks["target_type"] = (self.target_type < 0) | (self.target_type >= NUM_EVENT_TYPES)
        for column, bad in checks.items():
            if bad.any():
                row = int(np.argmax(bad))
                raise ValueError(
                    f"{name}: row {row} field {column!r} = {getattr(self, column)[row]} is out of range "
                    f"({graph.num_sessions} sessions, {graph.num_items} items, {NUM_EVENT_TYPES} event types)"
                )

    def fingerprint(self) -> str:
        """Cheap content hash (length + up to 1M evenly spaced rows) to tie checkpoints to their data."""
        n = len(self)
        step = max(1, n // 1_000_000)
        digest = hashlib.sha256(str(n).encode())
        for name in self._columns():
            digest.update(np.ascontiguousarray(getattr(self, name)[::step]).tobytes())
        return digest.hexdigest()[:16]


@dataclass(frozen=True)
class SampleConfig:
    """How the training and validation samples are drawn from the local graph."""

    seed: int = 11
    val_fraction: float = 0.05  # train sessions held out whole for early stopping
    max_train_samples: int | None = None  # cap on next-event samples (None = every next event)
    future_target_types: tuple[int, ...] = (1, 2)  # also every cart / order from a random earlier cut
    future_cuts_per_event: int = 1

    def __post_init__(self) -> None:
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"samples.val_fraction must be in [0, 1), got {self.val_fraction}")
        object.__setattr__(self, "future_target_types", tuple(int(t) for t in self.future_target_types or ()))

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> SampleConfig:
        return from_mapping(cls, values, "samples")


def make_samples(
    graph: Any, local_test_sessions: np.ndarray, config: SampleConfig
) -> tuple[SampleSet, SampleSet]:
    """Training samples (every next event of the local train sessions) and validation samples.

    Validation holds out ``val_fraction`` of the local *train* sessions whole (none of their events
    is a training target), each cut once at a seeded random position, as the official protocol cuts
    test sessions. ``local_test_sessions`` (ids) stay out of validation.
    """
    rng = np.random.default_rng(config.seed)
    test_index = graph.session_to_index(np.asarray(local_test_sessions))
    is_test = np.zeros(graph.num_sessions, dtype=bool)
    is_test[test_index] = True
    candidates = np.flatnonzero(~is_test)
    held_out = rng.choice(candidates, size=int(len(candidates) * config.val_fraction), replace=False)
    is_val = np.zeros(graph.num_sessions, dtype=bool)
    is_val[held_out] = True

    train_events = training_sample_events(graph, sessions=np.flatnonzero(~is_val))
    cap = config.max_train_samples
    if cap and len(train_events) > cap:
        train_events = np.sort(rng.choice(train_events, size=cap, replace=False))
    train = SampleSet.from_events(graph, train_events)
    if config.future_target_types:  # carts / orders seen from random earlier cuts, as OTTO labels them
        cut, target = future_target_samples(
            graph,
            config.future_target_types,
            sessions=np.flatnonzero(~is_val),
            seed=config.seed,
            cuts_per_event=config.future_cuts_per_event,
        )
        train = SampleSet.concat([train, SampleSet.from_cut_events(graph, cut, target)])
    val = SampleSet.from_events(
        graph, training_sample_events(graph, sessions=held_out, max_per_session=1, seed=config.seed)
    )
    logger.info(
        "DGSR samples: %d train, %d validation (%d held-out sessions)", len(train), len(val), len(held_out)
    )
    return train, val
