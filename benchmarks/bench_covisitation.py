"""Co-visitation fit/recommend throughput, and polars vs DuckDB for the pair-weight step.

    .venv/bin/python benchmarks/bench_covisitation.py --sessions 200000

Prints the time of ``CovisitationModel.fit`` and ``recommend`` on synthetic OTTO-shaped events, the
extrapolation to OTTO's 217M events / 1.67M test sessions, and the time of the same pair weighting
(last 30 events, 24 h window, per-session max, sum over sessions) written as one DuckDB query,
run on the same data in the same process (results checked equal).
"""

from __future__ import annotations

import argparse
import time

import duckdb
import numpy as np
import polars as pl
from bench_split import OTTO_EVENTS, otto_like_events

from gnn_recsys.baselines.covisitation import (
    CovisitationConfig,
    CovisitationModel,
    _pair_weights,
    weighted_recent_events,
)

OTTO_TEST_SESSIONS = 1_671_803


def duckdb_pair_weights(recent: pl.DataFrame, window_ms: int) -> pl.DataFrame:
    con = duckdb.connect()
    con.register("recent", recent.to_arrow())
    query = f"""
        WITH per_session AS (
            SELECT l.aid AS aid, r.aid AS neighbour, max(r.weight) AS weight
            FROM recent l JOIN recent r USING (session)
            WHERE l.aid <> r.aid AND abs(l.ts - r.ts) < {window_ms}
            GROUP BY l.session, l.aid, r.aid
        )
        SELECT aid, neighbour, sum(weight) AS weight FROM per_session GROUP BY aid, neighbour
    """
    return pl.from_arrow(con.sql(query).to_arrow_table())  # type: ignore[return-value]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=200_000)
    parser.add_argument("--query-sessions", type=int, default=100_000)
    args = parser.parse_args()

    events = otto_like_events(args.sessions, seed=1)
    config = CovisitationConfig()
    start = time.perf_counter()
    model = CovisitationModel.fit(events, config)
    fit_time = time.perf_counter() - start
    print(
        f"events: {events.height:,}  sessions: {args.sessions:,}  neighbour rows: {model.neighbours.height:,}"
    )
    print(
        f"fit: {fit_time:.2f} s ({events.height / fit_time / 1e6:.2f} M events/s); "
        f"extrapolated to {OTTO_EVENTS / 1e6:.0f}M events: {OTTO_EVENTS / events.height * fit_time / 60:.1f} min"
    )

    queries = events.filter(pl.col("session") < args.query_sessions)
    queries = queries.filter(pl.int_range(pl.len()).over("session") < 5)  # short prefixes, as OTTO test
    start = time.perf_counter()
    candidates = model.recommend(queries, k=20)
    rec_time = time.perf_counter() - start
    print(
        f"recommend: {args.query_sessions:,} sessions in {rec_time:.2f} s; extrapolated to "
        f"{OTTO_TEST_SESSIONS / 1e6:.2f}M test sessions: {OTTO_TEST_SESSIONS / args.query_sessions * rec_time:.0f} s "
        f"({candidates.height:,} rows)"
    )

    recent, kept = weighted_recent_events(events, config)
    ranges = [(0, recent.height)]
    start = time.perf_counter()
    polars_pairs = _pair_weights(recent, ranges, config, part=0, n_parts=1)
    polars_time = time.perf_counter() - start
    start = time.perf_counter()
    duck_pairs = duckdb_pair_weights(recent, config.time_window_ms)
    duck_time = time.perf_counter() - start
    key = ["aid", "neighbour"]
    joined = polars_pairs.join(duck_pairs, on=key, suffix="_duck")
    assert joined.height == polars_pairs.height == duck_pairs.height
    assert np.allclose(joined["weight"].to_numpy(), joined["weight_duck"].to_numpy())
    print(
        f"pair weights on {recent.height:,} events ({int((kept.astype(np.int64) ** 2).sum()):,} joined rows, "
        f"{polars_pairs.height:,} pairs): polars {polars_time:.2f} s, duckdb {duck_time:.2f} s, "
        f"duckdb/polars time ratio {duck_time / polars_time:.2f}"
    )


if __name__ == "__main__":
    main()
