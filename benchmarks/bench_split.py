"""Throughput of the vectorised OTTO split, against the per-session Python algorithm as baseline.

    .venv/bin/python benchmarks/bench_split.py --sessions 1000000 --baseline-sessions 50000

Prints events/s of ``split_events`` on synthetic OTTO-shaped events (heavy-tailed session lengths,
Zipf items, four weeks of time), the same for a plain per-session implementation of the official
``testset.py`` algorithm on a subset, their ratio, and the time extrapolated to OTTO's 217M events.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import polars as pl

from gnn_recsys.data.schema import MS_PER_DAY, OTTO_TRAIN_START_MS
from gnn_recsys.data.split import draw_cut_points, split_events

OTTO_EVENTS = 216_716_096


def otto_like_events(n_sessions: int, seed: int = 0, n_items: int = 1_800_000) -> pl.DataFrame:
    """Vectorised synthetic event table with OTTO's shape (mean ~17 events per session)."""
    rng = np.random.default_rng(seed)
    lengths = np.clip(np.round(rng.lognormal(1.6, 1.2, n_sessions)), 2, 500).astype(np.int64)
    n = int(lengths.sum())
    session = np.repeat(np.arange(n_sessions, dtype=np.int32), lengths)
    aid = np.minimum(rng.zipf(1.3, n) - 1, n_items - 1).astype(np.int32)
    start = rng.integers(0, 35 * MS_PER_DAY, n_sessions)
    gaps = rng.exponential(60_000, n).astype(np.int64)
    first = np.cumsum(lengths) - lengths
    gaps[first] = 0
    within = np.cumsum(gaps) - np.repeat(np.cumsum(gaps)[first], lengths)
    ts = OTTO_TRAIN_START_MS + np.repeat(start, lengths) + within
    event_type = rng.choice(3, size=n, p=[0.9, 0.08, 0.02]).astype(np.int8)
    return pl.DataFrame({"session": session, "aid": aid, "ts": ts, "type": event_type})


def loop_split(events: pl.DataFrame, test_days: int, seed: int) -> int:
    """The official algorithm with per-session Python loops (returns the number of label sets)."""
    sessions: dict[int, list[tuple[int, int, int]]] = {}
    for s, a, t, y in events.iter_rows():
        sessions.setdefault(s, []).append((a, t, y))
    split_ts = max(ev[-1][1] for ev in sessions.values()) - test_days * MS_PER_DAY
    train, test = {}, {}
    for s in sorted(sessions):
        ev = sessions[s]
        if ev[0][1] > split_ts:
            test[s] = ev
        else:
            kept = [e for e in ev if e[1] < split_ts]
            if len(kept) >= 2:
                train[s] = kept
    known = {a for ev in train.values() for a, _, _ in ev}
    test = {s: kept for s, ev in test.items() if len(kept := [e for e in ev if e[0] in known]) >= 2}
    cuts = draw_cut_points(np.array([len(test[s]) for s in sorted(test)]), seed)
    n_labels = 0
    for s, k in zip(sorted(test), cuts, strict=True):
        clicks, carts, orders = None, set(), set()
        for a, _, y in test[s][k:]:
            if y == 0 and clicks is None:
                clicks = a
            elif y == 1:
                carts.add(a)
            elif y == 2:
                orders.add(a)
        n_labels += (clicks is not None) + bool(carts) + bool(orders)
    return n_labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=1_000_000)
    parser.add_argument("--baseline-sessions", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    events = otto_like_events(args.sessions)
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        result = split_events(events, test_days=7, seed=42)
        times.append(time.perf_counter() - start)
    best = min(times)
    print(f"events: {events.height:,}  sessions: {args.sessions:,}")
    print(
        f"split_events: best of {args.repeats}: {best:.2f} s  ({events.height / best / 1e6:.1f} M events/s)"
    )
    print(f"  stats: {result.stats()}")
    print(
        f"  extrapolated to OTTO train ({OTTO_EVENTS / 1e6:.0f}M events): {OTTO_EVENTS / events.height * best:.0f} s"
    )

    subset = events.filter(pl.col("session") < args.baseline_sessions)
    start = time.perf_counter()
    n_loop = loop_split(subset, 7, 42)
    loop_time = time.perf_counter() - start
    start = time.perf_counter()
    vec = split_events(subset, test_days=7, seed=42)
    vec_time = time.perf_counter() - start
    counts = vec.stats()
    n_vec = sum(counts[f"label_sessions_{t}"] for t in ("clicks", "carts", "orders"))
    assert n_vec == n_loop, (n_vec, n_loop)
    print(
        f"baseline per-session loops on {subset.height:,} events: {loop_time:.2f} s "
        f"({subset.height / loop_time / 1e6:.2f} M events/s); vectorised on the same: {vec_time:.3f} s; "
        f"speed-up x{loop_time / vec_time:.0f}"
    )


if __name__ == "__main__":
    main()
