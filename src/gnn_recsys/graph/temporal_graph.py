"""The dynamic session-item graph of DGSR as time-sorted CSR arrays.

DGSR (Zhang et al., TKDE 2022) views every event as a timestamped edge between a session ("user")
and an item. The temporal subgraph sampler needs, for any node and any cut time, the node's most
recent edges strictly before that time. Keeping every edge twice, once grouped by session and once
grouped by item, each group sorted by time, turns that question into a bounded search inside one
contiguous segment. See ``docs/architecture.md`` ("Temporal graph") for the contract.

Everything is built with sorts and array arithmetic (no Python loop over sessions or items), so the
full OTTO table (217M events) is built in minutes, and the arrays are saved as plain ``.npy`` files
that can be memory-mapped by every DataLoader worker instead of copied.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl

logger = logging.getLogger(__name__)

#: Version of the on-disk layout written by :meth:`TemporalGraph.save`.
FORMAT_VERSION = 1
_META_FILE = "meta.json"
_EVENT_COLUMNS = {"session": pl.Int32, "aid": pl.Int32, "ts": pl.Int64, "type": pl.Int8}
_EVENT_TYPE_NAMES = ("clicks", "carts", "orders")
_MS_PER_DAY = 86_400_000
#: Columns of ``TemporalGraph.item_view``.
ITEM_EVENT, ITEM_TS, ITEM_SESSION, ITEM_SESSION_POS = 0, 1, 2, 3
SESSION_POS_LOW32 = (1 << 32) - 1
#: Item-id ranges up to this size are mapped with a dense lookup table instead of a sort.
_DENSE_LOOKUP_LIMIT = 1 << 26


@dataclass(eq=False)
class TemporalGraph:
    """Bipartite session-item event graph in two time-sorted CSR views.

    Session view (events in *session order*: sessions ascending, each session's events ascending in
    time, ties in input order); the *event index* ``e`` used everywhere is a position in it:

    * ``session_ptr[s]:session_ptr[s+1]`` are the events of session index ``s``;
    * ``ev_item`` (int32 item index), ``ev_ts`` (int64 Unix ms), ``ev_type`` (int8, 0/1/2).

    Item view (each item's events sorted by ``(ts, event index)``), stored as one row-major int64
    array ``item_view[E, 4]`` so that the sampler reads a node's recent edges from a few contiguous
    cache lines instead of one random place per field (~2x faster at 10M events):

    * ``item_ptr[i]:item_ptr[i+1]`` are the rows of item index ``i``;
    * columns (also exposed as read-only views): ``item_event`` (event index), ``item_ts``
      (``ev_ts[item_event]``), ``item_session`` (session index of the event), and
      ``item_session_pos`` = ``rank << 32 | remaining`` (the event's position within its session
      and the number of session events after it), from which the sampler gets the session's
      segment without a random read of ``session_ptr``;
    * ``ev_item_pos`` (int64), the inverse permutation: ``item_event[ev_item_pos[e]] == e``. The
      sampler uses it as a search hint: every item event before ``ev_item_pos[e]`` is no later than
      ``e``, so the search for "``e``'s item before a cut later than ``e``" starts right after it.

    Memory: 21 bytes per event in the session view plus 32 in the item view (OTTO: ~11.5 GB,
    memory-mapped after :meth:`save`).

    Maps back to the event table: ``item_aid[i]`` is the aid of item index ``i`` and
    ``session_id[s]`` the session id of session index ``s`` (ascending).
    """

    item_aid: np.ndarray
    session_id: np.ndarray
    session_ptr: np.ndarray
    ev_item: np.ndarray
    ev_ts: np.ndarray
    ev_type: np.ndarray
    ev_item_pos: np.ndarray
    item_ptr: np.ndarray
    item_view: np.ndarray
    #: Folder the arrays are memory-mapped from; lets pickling send the path instead of the data.
    source_dir: Path | None = field(default=None, repr=False)

    # ------------------------------------------------------------------ item-view columns
    @property
    def item_event(self) -> np.ndarray:
        """Event index of every item-view row (int64 view)."""
        return self.item_view[:, ITEM_EVENT]

    @property
    def item_ts(self) -> np.ndarray:
        """Timestamp of every item-view row (int64 view)."""
        return self.item_view[:, ITEM_TS]

    @property
    def item_session(self) -> np.ndarray:
        """Session index of every item-view row (int64 view)."""
        return self.item_view[:, ITEM_SESSION]

    @property
    def item_session_rank(self) -> np.ndarray:
        """Position of every item-view row's event within its session (int64)."""
        return self.item_view[:, ITEM_SESSION_POS] >> 32

    @property
    def item_session_remaining(self) -> np.ndarray:
        """Number of later events in the session of every item-view row's event (int64)."""
        return self.item_view[:, ITEM_SESSION_POS] & SESSION_POS_LOW32

    # ------------------------------------------------------------------ sizes and lookups
    @property
    def num_sessions(self) -> int:
        return len(self.session_id)

    @property
    def num_items(self) -> int:
        return len(self.item_aid)

    @property
    def num_events(self) -> int:
        return len(self.ev_item)

    def session_lengths(self) -> np.ndarray:
        """Events per session index (int64)."""
        return np.diff(self.session_ptr)

    def item_degrees(self) -> np.ndarray:
        """Events per item index (int64); zero for vocabulary items without events."""
        return np.diff(self.item_ptr)

    def ev_session(self) -> np.ndarray:
        """Session index of every event in session order (int32), computed on demand (not stored)."""
        return np.repeat(np.arange(self.num_sessions, dtype=np.int32), self.session_lengths())

    def aid_to_index(
        self, aids: np.ndarray | pl.Series | list[int], missing: int | None = None
    ) -> np.ndarray:
        """Item indices (int64) of ``aids``.

        Unknown aids raise ``KeyError`` naming them, unless ``missing`` is given (e.g. ``-1``), in
        which case they map to it (callers decide what an unknown aid means).
        """
        return _lookup(self.item_aid, aids, missing, "aid")

    def session_to_index(
        self, sessions: np.ndarray | pl.Series | list[int], missing: int | None = None
    ) -> np.ndarray:
        """Session indices (int64) of session ids; unknown ids raise ``KeyError`` unless ``missing``."""
        return _lookup(self.session_id, sessions, missing, "session")

    # ------------------------------------------------------------------ statistics
    def stats(self) -> dict[str, float]:
        """Flat summary for MLflow (counts, degrees, events per type, time span)."""
        lengths = self.session_lengths()
        degrees = self.item_degrees()
        type_counts = np.bincount(np.asarray(self.ev_type), minlength=len(_EVENT_TYPE_NAMES))
        has_events = self.num_events > 0
        ts_min = int(self.ev_ts.min()) if has_events else 0
        ts_max = int(self.ev_ts.max()) if has_events else 0
        stats: dict[str, float] = {
            "num_sessions": self.num_sessions,
            "num_items": self.num_items,
            "num_items_with_events": int(np.count_nonzero(degrees)),
            "num_events": self.num_events,
            "session_length_mean": float(lengths.mean()) if len(lengths) else 0.0,
            "session_length_median": float(np.median(lengths)) if len(lengths) else 0.0,
            "session_length_max": int(lengths.max()) if len(lengths) else 0,
            "item_degree_mean": float(degrees.mean()) if len(degrees) else 0.0,
            "item_degree_median": float(np.median(degrees)) if len(degrees) else 0.0,
            "item_degree_max": int(degrees.max()) if len(degrees) else 0,
            "ts_min": ts_min,
            "ts_max": ts_max,
            "time_span_days": (ts_max - ts_min) / _MS_PER_DAY,
        }
        for code, name in enumerate(_EVENT_TYPE_NAMES):
            stats[f"events_{name}"] = int(type_counts[code])
        return stats

    # ------------------------------------------------------------------ persistence
    def arrays(self) -> dict[str, np.ndarray]:
        """The graph's arrays by field name."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "source_dir"}

    def save(self, directory: str | Path) -> Path:
        """Write one ``<name>.npy`` per array plus ``meta.json`` (shapes, dtypes, counts)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "num_sessions": self.num_sessions,
            "num_items": self.num_items,
            "num_events": self.num_events,
            "arrays": {},
        }
        for name, array in self.arrays().items():
            np.save(directory / f"{name}.npy", np.ascontiguousarray(array), allow_pickle=False)
            meta["arrays"][name] = {"dtype": str(array.dtype), "shape": list(array.shape)}
        (directory / _META_FILE).write_text(json.dumps(meta, indent=2))
        return directory

    @classmethod
    def load(cls, directory: str | Path, mmap: bool = True) -> TemporalGraph:
        """Read a folder written by :meth:`save`; ``mmap=True`` maps the arrays read-only.

        Memory-mapped graphs are shared by all processes through the page cache, and pickle as
        their folder path (cheap to hand to DataLoader workers with any start method).
        """
        directory = Path(directory)
        meta_path = directory / _META_FILE
        if not meta_path.exists():
            raise FileNotFoundError(f"{meta_path}: no temporal graph here (meta.json missing)")
        meta = json.loads(meta_path.read_text())
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{meta_path}: format_version {meta.get('format_version')!r}, expected {FORMAT_VERSION}"
            )
        arrays = {}
        for name, spec in meta["arrays"].items():
            path = directory / f"{name}.npy"
            array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
            if str(array.dtype) != spec["dtype"] or list(array.shape) != spec["shape"]:
                raise ValueError(
                    f"{path}: dtype/shape {array.dtype}{list(array.shape)} differs from meta.json "
                    f"{spec['dtype']}{spec['shape']}"
                )
            arrays[name] = array
        expected = {f.name for f in fields(cls)} - {"source_dir"}
        if set(arrays) != expected:
            raise ValueError(f"{meta_path}: arrays {sorted(arrays)} differ from {sorted(expected)}")
        return cls(**arrays, source_dir=directory.resolve() if mmap else None)

    def __reduce__(self) -> tuple[Any, ...]:
        if self.source_dir is not None:
            return (TemporalGraph.load, (self.source_dir, True))
        return (_rebuild, (self.arrays(),))

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Check the CSR invariants in O(events); raises ``ValueError`` naming the broken one."""
        n_e, n_s, n_i = self.num_events, self.num_sessions, self.num_items
        checks = {
            "session_ptr shape": self.session_ptr.shape == (n_s + 1,),
            "item_ptr shape": self.item_ptr.shape == (n_i + 1,),
            "session_ptr bounds": n_s == 0 or (self.session_ptr[0] == 0 and self.session_ptr[-1] == n_e),
            "item_ptr bounds": self.item_ptr[0] == 0 and self.item_ptr[-1] == n_e,
            "sessions non-empty": bool(np.all(np.diff(self.session_ptr) > 0)),
            "session ids ascending": bool(np.all(np.diff(self.session_id.astype(np.int64)) > 0)),
            "event arrays length": all(len(a) == n_e for a in (self.ev_ts, self.ev_type, self.ev_item_pos)),
            "item_view shape": self.item_view.shape == (n_e, 4),
        }
        if all(checks.values()):
            ev_session = self.ev_session()
            new_session = np.zeros(n_e, dtype=bool)
            new_session[self.session_ptr[:-1]] = True
            new_item = np.zeros(n_e, dtype=bool)
            new_item[self.item_ptr[:-1][self.item_degrees() > 0]] = True
            checks |= {
                "session view time-sorted": bool(np.all((np.diff(self.ev_ts) >= 0) | new_session[1:])),
                "item view time-sorted": bool(np.all((np.diff(self.item_ts) >= 0) | new_item[1:])),
                "item_event permutation": bool(
                    np.array_equal(np.asarray(self.item_event)[np.asarray(self.ev_item_pos)], np.arange(n_e))
                ),
                "item_ts matches": bool(np.array_equal(self.item_ts, self.ev_ts[self.item_event])),
                "item_session matches": bool(np.array_equal(self.item_session, ev_session[self.item_event])),
                "item_session_pos matches": bool(
                    np.array_equal(
                        self.item_session_rank,
                        (np.arange(n_e) - self.session_ptr[:-1][ev_session])[self.item_event],
                    )
                    and np.array_equal(
                        self.item_session_remaining,
                        (self.session_ptr[1:][ev_session] - 1 - np.arange(n_e))[self.item_event],
                    )
                ),
                "item view grouped": bool(
                    np.array_equal(
                        self.ev_item[self.item_event],
                        np.repeat(np.arange(n_i, dtype=np.int32), self.item_degrees()),
                    )
                ),
            }
        broken = [name for name, ok in checks.items() if not ok]
        if broken:
            raise ValueError(f"temporal graph invariants broken: {broken}")


class AppendedArray:
    """A read-only 1-D array that reads as ``base`` followed by ``tail``, never concatenated.

    The MLflow model appends a request's few events to the session side of a graph of millions:
    copying the base per request would cost O(events) (~4.5 GB at OTTO size). Gathers (``a[index]``,
    :meth:`take`) split the index at ``len(base)``; ``base`` stays memory-mapped. Code that needs a
    gatherable array calls :func:`gatherable` instead of ``np.asarray``, which would copy.
    """

    def __init__(self, base: np.ndarray, tail: np.ndarray) -> None:
        self.base = np.asarray(base)
        if self.base.ndim != 1:
            raise ValueError(f"AppendedArray takes 1-D arrays, got a base of shape {self.base.shape}")
        self.tail = np.ascontiguousarray(tail, dtype=self.base.dtype)
        self.split = len(self.base)

    @property
    def dtype(self) -> np.dtype:
        return self.base.dtype

    @property
    def shape(self) -> tuple[int]:
        return (self.split + len(self.tail),)

    @property
    def ndim(self) -> int:
        return 1

    def __len__(self) -> int:
        return self.split + len(self.tail)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, (int, np.integer)):
            position = int(index) + (len(self) if index < 0 else 0)
            if not 0 <= position < len(self):
                raise IndexError(f"index {int(index)} is out of bounds for length {len(self)}")
            return self.base[position] if position < self.split else self.tail[position - self.split]
        if isinstance(index, slice):
            return self.take(np.arange(len(self))[index])
        return self.take(np.asarray(index))

    def take(self, index: Any, axis: int | None = None, out: None = None, mode: str = "raise") -> np.ndarray:
        """``self[index]`` for non-negative integer ``index`` of any shape (``np.take`` calls this).

        ``mode="raise"`` requires ``index`` in range; any other mode clamps out-of-range indices (the
        sampler's unchecked gathers mask those values anyway).
        """
        if axis not in (None, 0) or out is not None:
            raise TypeError("AppendedArray.take supports axis=0 and no out= only")
        index = np.asarray(index)
        if mode != "raise":
            index = np.clip(index, 0, len(self) - 1)
        if index.size == 0 or int(index.max()) < self.split:
            return self.base[index]
        out = np.empty(index.shape, dtype=self.dtype)
        in_tail = index >= self.split
        out[~in_tail] = self.base[index[~in_tail]]
        out[in_tail] = self.tail[index[in_tail] - self.split]
        return out

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        """The concatenation (O(length): what this class exists to avoid; for tests and tools)."""
        joined = np.concatenate([self.base, self.tail])
        return joined if dtype is None else joined.astype(dtype, copy=False)


def gatherable(array: Any) -> Any:
    """``array`` as something ``array[index]`` gathers from: an ndarray, or an :class:`AppendedArray` as is."""
    return array if isinstance(array, AppendedArray) else np.asarray(array)


def _rebuild(arrays: dict[str, np.ndarray]) -> TemporalGraph:
    return TemporalGraph(**arrays)


def _lookup(vocabulary: np.ndarray, values: Any, missing: int | None, what: str) -> np.ndarray:
    """Positions of ``values`` in the ascending ``vocabulary`` (int64)."""
    values = np.asarray(values.to_numpy() if isinstance(values, pl.Series) else values).astype(
        np.int64, copy=False
    )
    vocabulary = np.asarray(vocabulary)
    if len(vocabulary) == 0:
        index = np.zeros(len(values), dtype=np.int64)
        found = np.zeros(len(values), dtype=bool)
    else:
        index = np.searchsorted(vocabulary, values).astype(np.int64)
        clipped = np.minimum(index, len(vocabulary) - 1)
        found = vocabulary[clipped] == values
    if not found.all():
        if missing is None:
            unknown = np.unique(values[~found])
            raise KeyError(f"{len(unknown)} unknown {what}(s), e.g. {unknown[:10].tolist()}")
        index[~found] = missing
    return index


# ---------------------------------------------------------------------- construction
def _check_events(events: pl.DataFrame) -> pl.DataFrame:
    missing = [name for name in _EVENT_COLUMNS if name not in events.columns]
    if missing:
        raise ValueError(f"event table lacks column(s) {missing}; has {events.columns}")
    for name, dtype in _EVENT_COLUMNS.items():
        column = events.get_column(name)
        if not column.dtype.is_integer():
            raise ValueError(f"event table column {name!r} has dtype {column.dtype}, expected {dtype}")
        nulls = column.null_count()
        if nulls:
            row = int(column.is_null().arg_max())
            raise ValueError(f"event table column {name!r} has {nulls} null(s), first at row {row}")
    bad_type = ~events.get_column("type").is_in(list(range(len(_EVENT_TYPE_NAMES))))
    if bad_type.any():
        row = int(bad_type.arg_max())
        raise ValueError(
            f"event table column 'type' has value {events['type'][row]} at row {row}; expected 0, 1 or 2"
        )
    return events.select(pl.col(name).cast(dtype, strict=True) for name, dtype in _EVENT_COLUMNS.items())


#: Events per block when the item view is filled (bounds the temporaries of its gathers).
_FILL_BLOCK = 1 << 22


def _stable_order(major: np.ndarray, minor: np.ndarray) -> np.ndarray:
    """Permutation sorting by ``(major, minor)``, ties in input order (an unsigned or int64 index array).

    Packs both into one int64 key when it fits (a single multithreaded polars sort is ~2x faster than
    ``np.lexsort``), else falls back to ``np.lexsort``.
    """
    if len(major) == 0:
        return np.zeros(0, dtype=np.int64)
    minor_min = int(minor.min())
    minor_span = int(minor.max()) - minor_min + 1
    major_min, major_max = int(major.min()), int(major.max())
    if (major_max - major_min + 1) * minor_span < 2**62:
        # In place: one int64 array of temporaries instead of three at OTTO scale (224M events).
        key = major.astype(np.int64)
        key -= major_min
        key *= minor_span
        key += minor
        key -= minor_min
        frame = pl.DataFrame({"key": key}).with_row_index("row")
        del key
        row = frame.sort("key", maintain_order=True)["row"]
        del frame
        return row.to_numpy()  # polars' row index: uint32 up to 4.3G rows, half an int64's memory
    return np.lexsort((minor, major)).astype(np.int64)


def _dense_ids(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(unique ascending values, index of every value)`` without a full sort when ids are dense."""
    if len(values) == 0:
        return values[:0].copy(), np.zeros(0, dtype=np.int32)
    low, high = int(values.min()), int(values.max())
    if high - low < max(_DENSE_LOOKUP_LIMIT, len(values)):
        present = np.zeros(high - low + 1, dtype=bool)
        present[values - low] = True
        vocabulary = (np.flatnonzero(present) + low).astype(values.dtype)
        lookup = np.cumsum(present, dtype=np.int32) - 1
        return vocabulary, lookup[values - low]
    vocabulary, inverse = np.unique(values, return_inverse=True)
    return vocabulary, inverse.astype(np.int32)


def _map_to_vocabulary(
    aids: np.ndarray, item_aids: np.ndarray, unknown_aids: Literal["raise", "drop"]
) -> tuple[np.ndarray, np.ndarray | None]:
    """Item index of every aid under a fixed vocabulary; ``(indices, keep-mask or None)``."""
    item_aids = np.asarray(item_aids)
    if item_aids.ndim != 1 or not np.issubdtype(item_aids.dtype, np.integer):
        raise ValueError(f"item_aids must be a 1-D integer array, got {item_aids.dtype}{item_aids.shape}")
    if len(item_aids) and (
        item_aids.min() < np.iinfo(np.int32).min or item_aids.max() > np.iinfo(np.int32).max
    ):
        raise ValueError("item_aids must fit in Int32 (the event table's aid dtype)")
    sorter = np.argsort(item_aids, kind="stable")
    sorted_aids = item_aids[sorter]
    duplicated = sorted_aids[1:][sorted_aids[1:] == sorted_aids[:-1]]
    if len(duplicated):
        raise ValueError(f"item_aids has {len(duplicated)} duplicate(s), e.g. {duplicated[:10].tolist()}")
    if len(item_aids) == 0:
        position = np.zeros(len(aids), dtype=np.int64)
        found = np.zeros(len(aids), dtype=bool)
    else:
        position = np.minimum(np.searchsorted(sorted_aids, aids), len(sorted_aids) - 1)
        found = sorted_aids[position] == aids
    index = sorter[position].astype(np.int32)
    if found.all():
        return index, None
    unknown = np.unique(aids[~found])
    if unknown_aids == "raise":
        raise ValueError(
            f"{int((~found).sum())} event(s) have {len(unknown)} aid(s) outside item_aids, "
            f"e.g. {unknown[:10].tolist()}"
        )
    logger.warning(
        "build_temporal_graph: dropped %d event(s) with %d aid(s) outside the item vocabulary, e.g. %s",
        int((~found).sum()),
        len(unknown),
        unknown[:10].tolist(),
    )
    return index, found


def build_temporal_graph(
    events: pl.DataFrame,
    item_aids: np.ndarray | None = None,
    unknown_aids: Literal["raise", "drop"] = "raise",
) -> TemporalGraph:
    """Build the temporal graph from an event table (any row order).

    ``item_aids`` fixes the item vocabulary (item index ``i`` is ``item_aids[i]``, any order, unique),
    so that e.g. the local-validation graph and the full graph share item indices; vocabulary items
    without events get empty item segments. Events whose aid is outside it raise ``ValueError``
    naming the aids, or with ``unknown_aids="drop"`` are dropped and counted in a warning log.
    Without ``item_aids`` the vocabulary is the ascending set of aids present.

    Cost: two stable sorts of the events (skipped for the session view when the table is already in
    the contract's session/time order) plus O(events) array passes.
    """
    if unknown_aids not in ("raise", "drop"):
        raise ValueError(f"unknown_aids must be 'raise' or 'drop', got {unknown_aids!r}")
    events = _check_events(events)
    session = events.get_column("session").to_numpy()
    aid = events.get_column("aid").to_numpy()
    ts = events.get_column("ts").to_numpy()
    event_type = events.get_column("type").to_numpy()

    if item_aids is None:
        item_aid, ev_item = _dense_ids(aid)
    else:
        ev_item, keep = _map_to_vocabulary(aid, item_aids, unknown_aids)
        item_aid = np.asarray(item_aids).astype(np.int32)
        if keep is not None:
            session, ts, event_type, ev_item = session[keep], ts[keep], event_type[keep], ev_item[keep]
    del aid

    # Session view: sessions ascending, time ascending, ties in input order.
    if len(session) > 1:
        session_step = np.diff(session)
        in_order = bool(np.all(session_step >= 0) and np.all((session_step > 0) | (np.diff(ts) >= 0)))
    else:
        in_order = True
    if not in_order:
        order = _stable_order(session, ts)
        session, ts, event_type, ev_item = session[order], ts[order], event_type[order], ev_item[order]
    session_id, ev_session = _dense_ids(session)
    session_ptr = np.zeros(len(session_id) + 1, dtype=np.int64)
    np.cumsum(np.bincount(ev_session, minlength=len(session_id)), out=session_ptr[1:])

    # Item view: items ascending, then (ts, event index) -- the stable sort keeps event order on ties.
    del session  # the input columns no longer needed: peak memory at OTTO scale is what limits the build
    item_event = _stable_order(ev_item, ts)
    item_ptr = np.zeros(len(item_aid) + 1, dtype=np.int64)
    np.cumsum(np.bincount(ev_item, minlength=len(item_aid)), out=item_ptr[1:])

    # Filled in blocks so that the gathers' temporaries stay small (a few x 8 bytes x block, not x E).
    ev_item_pos = np.empty(len(item_event), dtype=np.int64)
    item_view = np.empty((len(item_event), 4), dtype=np.int64)
    for start in range(0, len(item_event), _FILL_BLOCK):
        stop = min(start + _FILL_BLOCK, len(item_event))
        block = item_event[start:stop]
        ev_item_pos[block] = np.arange(start, stop, dtype=np.int64)
        event_session = ev_session[block]
        item_view[start:stop, ITEM_EVENT] = block
        item_view[start:stop, ITEM_TS] = ts[block]
        item_view[start:stop, ITEM_SESSION] = event_session
        rank = block - session_ptr[event_session]
        remaining = session_ptr[event_session + 1] - 1 - block
        item_view[start:stop, ITEM_SESSION_POS] = (rank << 32) | remaining
    del item_event
    return TemporalGraph(
        item_aid=item_aid,
        session_id=session_id.astype(np.int32),
        session_ptr=session_ptr,
        ev_item=ev_item.astype(np.int32, copy=False),
        ev_ts=ts.astype(np.int64, copy=False),
        ev_type=event_type.astype(np.int8, copy=False),
        ev_item_pos=ev_item_pos,
        item_ptr=item_ptr,
        item_view=item_view,
    )
