"""Co-visitation fit/recommend time and peak memory, legacy vs candidate_rerank; polars vs DuckDB pairs.

    .venv/bin/python benchmarks/bench_covisitation.py --sessions 200000            # in-memory events
    .venv/bin/python benchmarks/generate_otto_scale.py --out /tmp/otto10 --fraction 0.1
    .venv/bin/python benchmarks/bench_covisitation.py --data /tmp/otto10            # 10% of OTTO's size

Each variant runs in its own process, so its peak RSS (``ru_maxrss``) is its own: the table shows the
RSS with the events loaded, the peak during fit + recommend, the wall and CPU times, and the wall
times' extrapolation to OTTO's 217M events / 1.67M test sessions (linear in events; the pair table
grows a little faster).
``--data`` reads ``train.jsonl`` / ``test.jsonl`` of a folder (cached next to them as parquet) and
recommends for the test sessions; without it, OTTO-shaped events are drawn in memory and 5-event
prefixes of ``--query-sessions`` sessions are the queries.  ``--duckdb`` also times the legacy pair
weighting as one DuckDB query on the same data (results checked equal).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import yaml
from bench_split import OTTO_EVENTS, otto_like_events

from gnn_recsys.baselines.covisitation import (
    CandidateRerankConfig,
    CandidateRerankModel,
    CovisitationConfig,
    CovisitationModel,
    _pair_weights,
    weighted_recent_events,
)
from gnn_recsys.data.ingest import read_events
from gnn_recsys.data.schema import event_type_code
from gnn_recsys.fixed_point import WEIGHT_SCALE

OTTO_TEST_SESSIONS = 1_671_803
VARIANTS = ("legacy", "candidate_rerank")
PARAMS = Path(__file__).resolve().parents[1] / "conf" / "base" / "parameters_baselines.yml"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_s() -> float:
    """User + system CPU seconds of this process: less sensitive than wall time to a shared machine."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def load(args: argparse.Namespace) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Fit events (train + test) and query events."""
    if args.data is None:
        events = otto_like_events(args.sessions, seed=1)
        queries = events.filter(pl.col("session") < args.query_sessions)
        return events, queries.filter(pl.int_range(pl.len()).over("session") < 5)  # short, as OTTO test
    tables = []
    for name in ("train", "test"):
        cached = args.data / f"{name}.parquet"
        if not cached.exists():
            read_events(args.data / f"{name}.jsonl", min_events=1 if name == "test" else 2).write_parquet(
                cached
            )
        tables.append(pl.read_parquet(cached))
    return pl.concat(tables), tables[1]


def run_variant(args: argparse.Namespace) -> dict[str, float]:
    """Fit and recommend with one variant's YAML parameters (in this process)."""
    events, queries = load(args)
    loaded = peak_rss_mb()
    params = yaml.safe_load(PARAMS.read_text())["covisitation"]
    start, cpu_start = time.perf_counter(), cpu_s()
    if args.variant == "legacy":
        options = {
            key: {event_type_code(name): w for name, w in value.items()}
            if key.endswith("type_weights")
            else value
            for key, value in params["legacy"].items()
        }
        model = CovisitationModel.fit(events, CovisitationConfig(**options))
        neighbour_rows = model.neighbours.height
    else:
        config = CandidateRerankConfig.from_params(params["candidate_rerank"])
        model = CandidateRerankModel.fit(events, config, filler_events=queries)  # type: ignore[assignment]
        neighbour_rows = sum(table.height for table in model.neighbours.values())  # type: ignore[union-attr]
    fit_s, fit_cpu_s = time.perf_counter() - start, cpu_s() - cpu_start
    start, cpu_start = time.perf_counter(), cpu_s()
    candidates = model.recommend(queries, k=params["top_k"])
    recommend_s, recommend_cpu_s = time.perf_counter() - start, cpu_s() - cpu_start
    n_queries = queries["session"].n_unique()
    return {
        "events": events.height,
        "query_sessions": n_queries,
        "neighbour_rows": neighbour_rows,
        "candidate_rows": candidates.height,
        "fit_s": fit_s,
        "recommend_s": recommend_s,
        "fit_cpu_s": fit_cpu_s,
        "recommend_cpu_s": recommend_cpu_s,
        "loaded_rss_mb": loaded,
        "peak_rss_mb": peak_rss_mb(),
        "otto_fit_min": OTTO_EVENTS / events.height * fit_s / 60,
        "otto_recommend_min": OTTO_TEST_SESSIONS / n_queries * recommend_s / 60,
    }


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


def compare_duckdb(args: argparse.Namespace) -> None:
    events, _ = load(args)
    config = CovisitationConfig()
    recent, kept = weighted_recent_events(events, config)
    start = time.perf_counter()
    polars_pairs = _pair_weights(recent, [(0, recent.height)], config, part=0, n_parts=1)
    polars_time = time.perf_counter() - start
    start = time.perf_counter()
    duck_pairs = duckdb_pair_weights(recent, config.time_window_ms)
    duck_time = time.perf_counter() - start
    joined = polars_pairs.join(duck_pairs, on=["aid", "neighbour"], suffix="_duck")
    assert joined.height == polars_pairs.height == duck_pairs.height
    # polars sums in fixed point (whole units of 1 / WEIGHT_SCALE), DuckDB in float64
    assert np.allclose(joined["weight"].to_numpy() / WEIGHT_SCALE, joined["weight_duck"].to_numpy())
    print(
        f"legacy pair weights on {recent.height:,} events ({int((kept.astype(np.int64) ** 2).sum()):,} joined "
        f"rows, {polars_pairs.height:,} pairs): polars {polars_time:.2f} s, duckdb {duck_time:.2f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sessions", type=int, default=200_000)
    parser.add_argument("--query-sessions", type=int, default=100_000)
    parser.add_argument("--data", type=Path, default=None, help="folder with train.jsonl and test.jsonl")
    parser.add_argument("--variant", choices=(*VARIANTS, "all"), default="all")
    parser.add_argument("--duckdb", action="store_true", help="also time the legacy pairs in DuckDB")
    args = parser.parse_args()

    if args.variant != "all":
        print(json.dumps(run_variant(args)))
        return
    forwarded = [a for a in sys.argv[1:] if a != "--duckdb"]
    rows = {}
    for variant in VARIANTS:  # one process each: ru_maxrss is a per-process peak
        out = subprocess.run(
            [sys.executable, __file__, *forwarded, "--variant", variant],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        rows[variant] = json.loads(out.strip().splitlines()[-1])
    first = rows[VARIANTS[0]]
    print(
        f"events: {first['events']:,}  query sessions: {first['query_sessions']:,}  "
        f"(extrapolated to {OTTO_EVENTS / 1e6:.0f}M events / {OTTO_TEST_SESSIONS / 1e6:.2f}M test sessions)"
    )
    header = f"{'variant':<17}{'fit s':>8}{'rec s':>8}{'fit cpu s':>10}{'rec cpu s':>10}"
    header += f"{'RSS loaded MB':>15}{'peak RSS MB':>13}"
    header += f"{'OTTO fit min':>14}{'OTTO rec min':>14}{'neighbour rows':>16}"
    print(header)
    for variant, row in rows.items():
        print(
            f"{variant:<17}{row['fit_s']:>8.1f}{row['recommend_s']:>8.1f}{row['fit_cpu_s']:>10.1f}"
            f"{row['recommend_cpu_s']:>10.1f}{row['loaded_rss_mb']:>15,.0f}"
            f"{row['peak_rss_mb']:>13,.0f}{row['otto_fit_min']:>14.1f}{row['otto_recommend_min']:>14.1f}"
            f"{row['neighbour_rows']:>16,}"
        )
    if args.duckdb:
        compare_duckdb(args)


if __name__ == "__main__":
    main()
