"""Time of ``evaluate`` and ``to_submission`` at OTTO test scale, against hash-join baselines.

    .venv/bin/python benchmarks/bench_evaluation.py --sessions 1671803

Random candidates (20 per session, some duplicates) and labels (one click and one cart per session).
The baselines are the straightforward polars formulations (multi-column group-by / join); the
results of both are checked equal.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import polars as pl

from gnn_recsys.evaluation.metrics import evaluate
from gnn_recsys.export.candidates import candidates_frame, to_submission


def hash_join_recall(candidates: pl.DataFrame, labels: pl.DataFrame, k: int = 20) -> dict[int, float]:
    best = candidates.group_by(["session", "aid"]).agg(pl.col("rank").min())
    hits = labels.join(best, on=["session", "aid"], how="left").with_columns(
        (pl.col("rank") <= k).fill_null(False).alias("hit")
    )
    per_session = hits.group_by(["type", "session"]).agg(pl.col("hit").sum(), pl.len().alias("n"))
    per_type = per_session.group_by("type").agg(pl.col("hit").sum(), pl.col("n").clip(upper_bound=k).sum())
    return {row["type"]: row["hit"] / row["n"] for row in per_type.iter_rows(named=True)}


def group_by_submission(candidates: pl.DataFrame, k: int = 20) -> pl.DataFrame:
    lists = (
        candidates.sort(["session", "rank", "aid"])
        .unique(subset=["session", "aid"], keep="first", maintain_order=True)
        .group_by("session", maintain_order=True)
        .head(k)
        .group_by("session", maintain_order=True)
        .agg(pl.col("aid").cast(pl.String).str.join(" ").alias("labels"))
    )
    parts = [
        lists.select(
            "session",
            pl.lit(i).alias("t"),
            (pl.col("session").cast(pl.String) + f"_{n}").alias("session_type"),
            "labels",
        )
        for i, n in enumerate(("clicks", "carts", "orders"))
    ]
    return pl.concat(parts).sort(["session", "t"]).select("session_type", "labels")


def timed(fn, *args):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=1_671_803)
    args = parser.parse_args()
    n = args.sessions
    rng = np.random.default_rng(0)
    candidates = candidates_frame(np.arange(n), rng.integers(0, 1000, (n, 20)), rng.random((n, 20)), "bench")
    labels = pl.DataFrame(
        {
            "session": np.repeat(np.arange(n), 2).astype(np.int32),
            "type": np.tile([0, 1], n).astype(np.int8),
            "aid": rng.integers(0, 1000, 2 * n).astype(np.int32),
        }
    )
    print(f"{n:,} sessions, {candidates.height:,} candidate rows, {labels.height:,} label rows")

    metrics, t_eval = timed(evaluate, candidates, labels)
    recalls, t_hash = timed(hash_join_recall, candidates, labels)
    assert np.isclose(metrics["recall@20_clicks"], recalls[0]) and np.isclose(
        metrics["recall@20_carts"], recalls[1]
    )
    print(f"evaluate: {t_eval:.2f} s; hash-join baseline: {t_hash:.2f} s; speed-up x{t_hash / t_eval:.1f}")

    submission, t_sub = timed(to_submission, candidates)
    reference, t_ref = timed(group_by_submission, candidates)
    assert submission.equals(reference)
    print(f"to_submission: {t_sub:.2f} s; group-by baseline: {t_ref:.2f} s; speed-up x{t_ref / t_sub:.1f}")


if __name__ == "__main__":
    main()
