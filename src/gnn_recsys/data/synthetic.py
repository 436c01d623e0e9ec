"""Seeded synthetic OTTO sessions: the project's default data, with structure a model can learn.

Why synthetic: the real OTTO files (11 GB of JSONL) cannot ship with the project and are too large for
a laptop run, yet every stage (ingest, split, baselines, graph, GNN) needs data in the exact OTTO
format. The generator writes ``train.jsonl`` / ``test.jsonl`` byte-compatible with the Kaggle files
(``{"session":0,"events":[{"aid":12,"ts":1659304800025,"type":"clicks"},...]}``, Unix milliseconds)
and plants behaviour that resembles shopping, so that a co-visitation baseline beats popularity and a
GNN has transitions to learn:

* **Item popularity** is heavy-tailed (Zipf-Mandelbrot weights ``(rank + offset) ** -exponent`` over a
  random permutation of the aids).
* **Categories**: every item belongs to one category (about ``items_per_category`` items each).
* **Related items**: each item has 3-5 related items (``min_related..max_related``) from its own
  category, drawn with weights ``popularity ** related_popularity_power`` (popular items are related
  to more items). From the current item the next click is a related item with probability
  ``p_related``. This is the item-to-item signal that co-visitation counts and message passing pick up;
  :func:`build_item_catalog` exposes the table so tests can measure it.
* **Session interest**: the other clicks re-view one of the last ``recent_items`` clicked items
  (``p_repeat``), jump to a popularity-sampled item anywhere (``p_switch``, an interest switch), or
  otherwise pick a popularity-sampled item of the current interest category. The interest is always
  the category of the last clicked item, so it drifts with the session.
* **Funnel**: the first event is a click. Later events are carts with probability ``p_cart`` (of the
  current item with probability ``p_cart_current``, else of a recently clicked one) and orders with
  probability ``p_order`` while the cart holds items; an order takes an item out of the cart and
  continues as a checkout (more orders in the same millisecond) with probability
  ``p_checkout_continue``. Defaults give about 90 % clicks, 8 % carts, 2 % orders, like OTTO.
* **Time**: gaps between events are lognormal seconds (median ``exp(gap_log_mean_s)``), with a
  probability ``p_long_gap`` of a long pause (hours to days) and ``p_same_ts`` of an identical
  timestamp; orders of one checkout share their timestamp. A session starts uniformly in its window
  (four weeks from 2022-07-31 22:00 UTC for train, the following week for test) and is compressed to
  fit when its gaps would overrun the window.
* **Length**: lognormal number of events (``length_log_mean``, ``length_log_sigma``), clipped to
  ``min_length..max_length`` (2..500 as in OTTO's train file).
* **Test file**: session ids continue after the train ids; every test session is cut to a random
  prefix of ``1..len-1`` events (the Kaggle test file keeps at least one event and hides the rest), so
  1-event test sessions exist.

The simulation is vectorised over the sessions of a chunk: a Python loop runs over the *step index*
(at most ``max_length``) and updates all sessions still active at that step at once. Chunks of
``chunk_sessions`` sessions are streamed to the files, so the same code writes full OTTO scale
(:meth:`SyntheticConfig.otto_scale`) with bounded memory. Each chunk has its own random stream derived
from ``(seed, split, chunk index)``, so output is byte-identical for the same config.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Literal

import numpy as np
import polars as pl
import pyarrow as pa

from gnn_recsys.data.schema import (
    CART,
    CLICK,
    EVENT_SCHEMA,
    EVENT_TYPES,
    MS_PER_DAY,
    ORDER,
    OTTO_TEST_DAYS,
    OTTO_TRAIN_DAYS,
    OTTO_TRAIN_START_MS,
    empty_events,
)

logger = logging.getLogger(__name__)

Split = Literal["train", "test"]
_SPLIT_CODE = {"train": 1, "test": 2}


@dataclass(frozen=True)
class SyntheticConfig:
    """Sizes and behaviour parameters of the synthetic OTTO data (defaults: the small project run)."""

    num_items: int = 4_000
    num_train_sessions: int = 20_000
    num_test_sessions: int = 4_000
    seed: int = 42
    # catalogue
    items_per_category: int = 40
    popularity_exponent: float = 1.0
    popularity_offset: float = 10.0
    min_related: int = 3
    max_related: int = 5
    related_popularity_power: float = 0.5
    # next-click behaviour (the rest picks a popular item of the current category)
    p_related: float = 0.55
    p_repeat: float = 0.15
    p_switch: float = 0.05
    recent_items: int = 6
    # funnel
    p_cart: float = 0.085
    p_cart_current: float = 0.6
    p_order: float = 0.03
    p_checkout_continue: float = 0.5
    cart_capacity: int = 8
    # session length (events): lognormal, clipped
    length_log_mean: float = 2.1
    length_log_sigma: float = 1.1
    min_length: int = 2
    max_length: int = 500
    # gaps between events
    gap_log_mean_s: float = 3.5
    gap_log_sigma: float = 1.3
    p_long_gap: float = 0.03
    long_gap_log_mean_s: float = 9.5
    long_gap_log_sigma: float = 1.2
    p_same_ts: float = 0.01
    p_checkout_same_ts: float = 0.85
    # time windows
    start_ms: int = OTTO_TRAIN_START_MS
    train_days: int = OTTO_TRAIN_DAYS
    test_days: int = OTTO_TEST_DAYS
    # streaming
    chunk_sessions: int = 50_000

    def __post_init__(self) -> None:
        if self.num_items < 2 or self.num_train_sessions < 0 or self.num_test_sessions < 0:
            raise ValueError("need num_items >= 2 and non-negative session counts")
        if not 1 <= self.min_related <= self.max_related:
            raise ValueError("need 1 <= min_related <= max_related")
        if not 2 <= self.min_length <= self.max_length:
            raise ValueError("need 2 <= min_length <= max_length (test prefixes need 2 events)")
        probabilities = (
            self.p_related,
            self.p_repeat,
            self.p_switch,
            self.p_cart,
            self.p_order,
            self.p_same_ts,
        )
        if not all(0.0 <= p <= 1.0 for p in probabilities) or not 0.0 <= self.p_cart_current < 1.0:
            raise ValueError("probabilities must lie in [0, 1] (p_cart_current in [0, 1))")
        if self.p_repeat + self.p_related + self.p_switch > 1.0:
            raise ValueError("p_repeat + p_related + p_switch must not exceed 1")
        if self.chunk_sessions < 1 or self.recent_items < 1 or self.cart_capacity < 1:
            raise ValueError("chunk_sessions, recent_items and cart_capacity must be >= 1")

    @classmethod
    def otto_scale(cls, **overrides: object) -> SyntheticConfig:
        """Full OTTO size: 12.9M train sessions (~217M events), 1.67M test sessions, 1.86M items.

        Sessions are a little longer than in the default run (mean ~16.8 events, as in OTTO's train file).
        """
        sizes: dict[str, object] = {
            "num_items": 1_855_603,
            "num_train_sessions": 12_899_779,
            "num_test_sessions": 1_671_803,
            "length_log_mean": 2.22,
            "chunk_sessions": 200_000,
        }
        sizes.update(overrides)
        return replace(cls(), **sizes)  # type: ignore[arg-type]


@dataclass(frozen=True)
class ItemCatalog:
    """Items' categories, popularity and related items (the planted structure), plus samplers."""

    category: np.ndarray  # int32 [num_items]
    popularity: np.ndarray  # float64 [num_items], sums to 1
    related: np.ndarray  # int32 [num_items, max_related]; columns >= num_related[i] repeat earlier ones
    num_related: np.ndarray  # int32 [num_items]
    _global_cum: np.ndarray
    _cat_items: np.ndarray  # items sorted by category
    _cat_cum: np.ndarray  # cumulative popularity in _cat_items order
    _cat_start: np.ndarray  # int64 [num_categories + 1]

    @property
    def num_items(self) -> int:
        return int(self.category.shape[0])

    def sample_global(self, u: np.ndarray) -> np.ndarray:
        """Items drawn by popularity, one per uniform in ``u`` (inverse-CDF, so vectorised)."""
        idx = np.searchsorted(self._global_cum, u * self._global_cum[-1], side="right")
        return np.minimum(idx, self.num_items - 1).astype(np.int32)

    def sample_in_category(self, categories: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Items drawn by popularity within each given (non-empty) category."""
        return self._cat_items[_sample_segments(self._cat_cum, self._cat_start, categories, u)]

    def is_related(self, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
        """Whether ``dst[i]`` is one of the related items of ``src[i]``."""
        return (self.related[src] == dst[:, None]).any(axis=1)


def _sample_segments(cum: np.ndarray, start: np.ndarray, segment: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Index into ``cum`` drawn proportionally to the weights inside ``segment`` (inverse CDF)."""
    lo_idx = start[segment]
    hi_idx = start[segment + 1]
    before = np.where(lo_idx > 0, cum[np.maximum(lo_idx - 1, 0)], 0.0)
    target = before + u * (cum[hi_idx - 1] - before)
    idx = np.searchsorted(cum, target, side="right")
    return np.clip(idx, lo_idx, hi_idx - 1)


def build_item_catalog(config: SyntheticConfig) -> ItemCatalog:
    """Draw the item universe of ``config`` (deterministic for ``config.seed``)."""
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 0]))
    n = config.num_items
    rank = rng.permutation(n)  # rank[aid]: 0 = most popular
    weight = (rank + 1.0 + config.popularity_offset) ** -config.popularity_exponent
    popularity = weight / weight.sum()

    num_categories = max(1, round(n / config.items_per_category))
    category = rng.integers(0, num_categories, size=n).astype(np.int32)
    cat_items = np.argsort(category, kind="stable").astype(np.int32)
    cat_start = np.searchsorted(category[cat_items], np.arange(num_categories + 1)).astype(np.int64)

    # related items: popularity-biased (flattened by related_popularity_power) within the category
    rel_cum = np.cumsum(popularity[cat_items] ** config.related_popularity_power)
    k = config.max_related
    draws = _sample_segments(
        rel_cum, cat_start, np.repeat(category, k), rng.random(n * k)
    )  # positions in cat_items
    related = cat_items[draws].reshape(n, k)
    self_hit = related == np.arange(n, dtype=np.int32)[:, None]
    # avoid self-loops: take the next item of the category (cyclically) instead ...
    pos = draws.reshape(n, k)
    seg_lo = cat_start[category][:, None]
    seg_len = (cat_start[category + 1] - cat_start[category])[:, None]
    shifted = cat_items[seg_lo + (pos - seg_lo + 1) % seg_len]
    related = np.where(self_hit, shifted, related)
    # ... and for singleton categories, any popular item
    still_self = related == np.arange(n, dtype=np.int32)[:, None]
    if still_self.any():
        glob = np.cumsum(popularity)
        fill = np.minimum(np.searchsorted(glob, rng.random(int(still_self.sum())) * glob[-1]), n - 1)
        related[still_self] = fill.astype(np.int32)
    num_related = rng.integers(config.min_related, config.max_related + 1, size=n).astype(np.int32)
    # columns past num_related repeat the first ones, so related[i] only ever holds true related items
    cols = np.arange(k)[None, :] % num_related[:, None]
    related = np.take_along_axis(related, cols, axis=1).astype(np.int32)

    return ItemCatalog(
        category=category,
        popularity=popularity,
        related=related,
        num_related=num_related,
        _global_cum=np.cumsum(popularity),
        _cat_items=cat_items,
        _cat_cum=np.cumsum(popularity[cat_items]),
        _cat_start=cat_start,
    )


def _session_lengths(config: SyntheticConfig, n: int, rng: np.random.Generator) -> np.ndarray:
    raw = np.rint(rng.lognormal(config.length_log_mean, config.length_log_sigma, size=n))
    return np.clip(raw, config.min_length, config.max_length).astype(np.int64)


def _pick_recent(recent: np.ndarray, n_clicks: np.ndarray, rows: np.ndarray, u: np.ndarray) -> np.ndarray:
    """One of the last ``min(n_clicks, R)`` clicked items of each row, uniformly."""
    width = recent.shape[1]
    filled = np.minimum(n_clicks[rows], width)
    back = np.minimum((u * filled).astype(np.int64), filled - 1)
    slot = (n_clicks[rows] - 1 - back) % width
    return recent[rows, slot]


def _simulate_items_and_types(
    catalog: ItemCatalog, config: SyntheticConfig, lengths: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Aids and type codes of all events of a chunk, session-major in the order of ``lengths``.

    Sessions are sorted by length (descending) so that the sessions active at step ``t`` are a prefix
    of the state arrays; the loop runs over steps, each step updating all active sessions at once.
    """
    n = lengths.shape[0]
    order = np.argsort(-lengths, kind="stable")
    sorted_len = lengths[order]
    max_len = int(sorted_len[0])
    n_active = np.searchsorted(-sorted_len, -np.arange(max_len), side="left")
    step_start = np.concatenate([[0], np.cumsum(n_active)[:-1]])
    total = int(lengths.sum())
    aid_flat = np.empty(total, dtype=np.int32)
    type_flat = np.zeros(total, dtype=np.int8)

    recent_w, cart_w = config.recent_items, config.cart_capacity
    cur = catalog.sample_global(rng.random(n))
    recent = np.full((n, recent_w), -1, dtype=np.int32)
    recent[:, 0] = cur
    n_clicks = np.ones(n, dtype=np.int64)
    cart = np.full((n, cart_w), -1, dtype=np.int32)
    cart_n = np.zeros(n, dtype=np.int64)
    checkout = np.zeros(n, dtype=bool)
    aid_flat[:n] = cur

    p_rep = config.p_repeat
    p_rel = p_rep + config.p_related
    p_sw = p_rel + config.p_switch
    for t in range(1, max_len):
        a = int(n_active[t])
        u = rng.random((a, 4))
        has_cart = cart_n[:a] > 0
        is_order = has_cart & (checkout[:a] | (u[:, 0] < config.p_order))
        is_cart = ~is_order & (u[:, 1] < config.p_cart)
        out = np.empty(a, dtype=np.int32)
        typ = np.zeros(a, dtype=np.int8)

        rows = np.flatnonzero(~(is_order | is_cart))  # clicks
        if rows.size:
            mode, pick = u[rows, 2], u[rows, 3]
            src = cur[rows]
            item = np.empty(rows.size, dtype=np.int32)
            in_cat = mode >= p_sw
            item[in_cat] = catalog.sample_in_category(catalog.category[src[in_cat]], pick[in_cat])
            rel = (mode >= p_rep) & (mode < p_rel)
            j = (pick[rel] * catalog.num_related[src[rel]]).astype(np.int64)
            item[rel] = catalog.related[src[rel], j]
            sw = (mode >= p_rel) & (mode < p_sw)
            item[sw] = catalog.sample_global(pick[sw])
            rep = mode < p_rep
            item[rep] = _pick_recent(recent, n_clicks, rows[rep], pick[rep])
            out[rows] = item
            cur[rows] = item
            recent[rows, n_clicks[rows] % recent_w] = item
            n_clicks[rows] += 1

        rows = np.flatnonzero(is_cart)
        if rows.size:
            typ[rows] = CART
            pick = u[rows, 3]
            current = pick < config.p_cart_current
            item = _pick_recent(
                recent, n_clicks, rows, (pick - config.p_cart_current) / (1.0 - config.p_cart_current)
            )
            item[current] = cur[rows[current]]
            out[rows] = item
            empty = cart[rows] < 0
            slot = np.where(empty.any(axis=1), empty.argmax(axis=1), (u[rows, 2] * cart_w).astype(np.int64))
            cart_n[rows] += empty.any(axis=1)
            cart[rows, slot] = item

        rows = np.flatnonzero(is_order)
        if rows.size:
            typ[rows] = ORDER
            priority = rng.random((rows.size, cart_w))
            priority[cart[rows] < 0] = -1.0
            slot = priority.argmax(axis=1)
            out[rows] = cart[rows, slot]
            cart[rows, slot] = -1
            cart_n[rows] -= 1
        checkout[:a] = is_order & (u[:, 2] < config.p_checkout_continue) & (cart_n[:a] > 0)

        lo = int(step_start[t])
        aid_flat[lo : lo + a] = out
        type_flat[lo : lo + a] = typ

    # step-major -> session-major, in the caller's session order
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    session_row = np.repeat(np.arange(n), lengths)
    step = np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    flat = step_start[step] + rank[session_row]
    return aid_flat[flat], type_flat[flat]


def _simulate_ts(
    config: SyntheticConfig,
    lengths: np.ndarray,
    types: np.ndarray,
    *,
    window_start_ms: int,
    window_ms: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Non-decreasing timestamps per session (session-major), each session inside its window."""
    total = types.shape[0]
    starts = np.cumsum(lengths) - lengths
    gap_s = rng.lognormal(config.gap_log_mean_s, config.gap_log_sigma, size=total)
    long_gap = rng.random(total) < config.p_long_gap
    gap_s[long_gap] = rng.lognormal(
        config.long_gap_log_mean_s, config.long_gap_log_sigma, int(long_gap.sum())
    )
    gap = np.rint(gap_s * 1000.0).astype(np.int64)
    gap[rng.random(total) < config.p_same_ts] = 0
    prev_type = np.empty_like(types)
    prev_type[1:] = types[:-1]
    prev_type[0] = CLICK
    checkout = (types == ORDER) & (prev_type == ORDER) & (rng.random(total) < config.p_checkout_same_ts)
    gap[checkout] = 0
    gap[starts] = 0

    span = np.add.reduceat(gap, starts)
    room = int(window_ms * 0.95)
    too_long = span > room
    if too_long.any():
        scale = np.ones(lengths.shape[0])
        scale[too_long] = room / span[too_long]
        gap = np.floor(gap * np.repeat(scale, lengths)).astype(np.int64)
        span = np.add.reduceat(gap, starts)
    start_ts = window_start_ms + (rng.random(lengths.shape[0]) * (window_ms - 1 - span)).astype(np.int64)
    cum = np.cumsum(gap)
    return np.repeat(start_ts - cum[starts], lengths) + cum


def _chunk_events(
    catalog: ItemCatalog,
    config: SyntheticConfig,
    split: Split,
    *,
    chunk_index: int,
    first_session: int,
    n: int,
) -> pl.DataFrame:
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, _SPLIT_CODE[split], chunk_index]))
    lengths = _session_lengths(config, n, rng)
    aids, types = _simulate_items_and_types(catalog, config, lengths, rng)
    day0 = config.start_ms
    if split == "train":
        window_start, window_ms = day0, config.train_days * MS_PER_DAY
    else:
        window_start, window_ms = day0 + config.train_days * MS_PER_DAY, config.test_days * MS_PER_DAY
    ts = _simulate_ts(config, lengths, types, window_start_ms=window_start, window_ms=window_ms, rng=rng)
    sessions = np.repeat(np.arange(first_session, first_session + n, dtype=np.int32), lengths)
    if split == "test":
        # Kaggle test file: a random prefix of 1..len-1 events of each session
        keep = 1 + (rng.random(n) * (lengths - 1)).astype(np.int64)
        step = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        mask = step < np.repeat(keep, lengths)
        sessions, aids, ts, types = sessions[mask], aids[mask], ts[mask], types[mask]
    return pl.DataFrame({"session": sessions, "aid": aids, "ts": ts, "type": types}, schema=EVENT_SCHEMA)


def iter_synthetic_chunks(
    config: SyntheticConfig, split: Split = "train", catalog: ItemCatalog | None = None
) -> Iterator[pl.DataFrame]:
    """Event tables (contract schema) of consecutive chunks of ``split`` sessions."""
    if split not in _SPLIT_CODE:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    catalog = catalog if catalog is not None else build_item_catalog(config)
    if split == "train":
        first, count = 0, config.num_train_sessions
    else:
        first, count = config.num_train_sessions, config.num_test_sessions
    for chunk_index, lo in enumerate(range(0, count, config.chunk_sessions)):
        n = min(config.chunk_sessions, count - lo)
        yield _chunk_events(catalog, config, split, chunk_index=chunk_index, first_session=first + lo, n=n)


def synthetic_events(config: SyntheticConfig | None = None, split: Split = "train") -> pl.DataFrame:
    """All events of ``split`` as one event table (in memory: for tests and small configs)."""
    config = config or SyntheticConfig()
    frames = list(iter_synthetic_chunks(config, split))
    return pl.concat(frames) if frames else empty_events()


def events_to_otto_jsonl(events: pl.DataFrame, sink: IO[bytes] | str | Path) -> None:
    """Write an event table (sessions contiguous, time-ordered) as OTTO JSONL.

    Builds ``events`` as an Arrow ``list<struct<aid, ts, type>>`` straight from session offsets (no
    group-by), then lets polars' NDJSON writer emit the exact OTTO layout: keys ``session, events`` /
    ``aid, ts, type`` in that order, no spaces, one session per line.
    """
    session = events["session"].to_numpy()
    if session.size == 0:
        return
    change = np.flatnonzero(session[1:] != session[:-1]) + 1
    offsets = np.concatenate([[0], change, [session.size]]).astype(np.int32)
    type_names = pa.DictionaryArray.from_arrays(
        pa.array(events["type"].to_numpy()), pa.array(list(EVENT_TYPES))
    ).cast(pa.string())
    struct = pa.StructArray.from_arrays(
        [pa.array(events["aid"].to_numpy()), pa.array(events["ts"].to_numpy()), type_names],
        names=["aid", "ts", "type"],
    )
    table = pa.table(
        {"session": pa.array(session[offsets[:-1]]), "events": pa.ListArray.from_arrays(offsets, struct)}
    )
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    frame.write_ndjson(sink)


def write_synthetic_otto(
    train_path: str | Path, test_path: str | Path, config: SyntheticConfig | None = None
) -> dict[str, float]:
    """Stream synthetic ``train.jsonl`` and ``test.jsonl`` in OTTO format; return counts.

    Memory is bounded by one chunk (``config.chunk_sessions`` sessions) plus the item catalogue.
    """
    config = config or SyntheticConfig()
    began = time.perf_counter()
    catalog = build_item_catalog(config)
    counts: dict[str, float] = {"num_items": float(config.num_items)}
    for split, path in (("train", Path(train_path)), ("test", Path(test_path))):
        path.parent.mkdir(parents=True, exist_ok=True)
        n_sessions = n_events = 0
        per_type = np.zeros(len(EVENT_TYPES), dtype=np.int64)
        total_sessions = config.num_train_sessions if split == "train" else config.num_test_sessions
        n_chunks = math.ceil(total_sessions / config.chunk_sessions)
        with path.open("wb") as sink:
            for i, chunk in enumerate(iter_synthetic_chunks(config, split, catalog)):  # type: ignore[arg-type]
                events_to_otto_jsonl(chunk, sink)
                n_events += chunk.height
                n_sessions += chunk["session"].n_unique()
                per_type += np.bincount(chunk["type"].to_numpy(), minlength=len(EVENT_TYPES))
                if n_chunks > 1:
                    logger.info("synthetic %s: chunk %d/%d, %d events", split, i + 1, n_chunks, n_events)
        counts[f"{split}_sessions"] = float(n_sessions)
        counts[f"{split}_events"] = float(n_events)
        for name, count in zip(EVENT_TYPES, per_type, strict=True):
            counts[f"{split}_{name}"] = float(count)
        counts[f"{split}_bytes"] = float(path.stat().st_size)
    counts["seconds"] = time.perf_counter() - began
    counts["events_per_s"] = (counts["train_events"] + counts["test_events"]) / max(counts["seconds"], 1e-9)
    return counts
