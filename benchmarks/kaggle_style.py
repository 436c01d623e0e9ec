"""Kaggle-style check on a public session dataset: truncate a held-out test file, score a submission.

The local validation score is only worth trusting if it predicts the score of a submission on
sessions the run never saw. This script makes such a test set from a dataset's own test file and
scores ``submission_<model>.csv`` files against it, the way Kaggle scored OTTO:

    python benchmarks/kaggle_style.py prepare --test yoochoose-clicks-100k_test.txt --out /tmp/kaggle
    kedro run --params "raw_format=events_table,raw_train_path=...train_full.txt,\\
        raw_test_path=/tmp/kaggle/test_prefixes.tsv,columns.session=SessionId,..."
    python benchmarks/kaggle_style.py score --labels /tmp/kaggle/labels.parquet \\
        data/07_model_output/submission_*.csv

``prepare`` cuts every test session (>= 2 events) at a seeded random point as the official protocol
does (:func:`gnn_recsys.data.split.draw_cut_points`): the prefix goes to ``test_prefixes.tsv`` (same
columns), the labels are the next event after the cut (a click: the dataset has no types; with a
``--type-col`` later carts and orders are labels too).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import polars as pl

from gnn_recsys.data.split import draw_cut_points, positions_in_session
from gnn_recsys.evaluation.metrics import evaluate, metrics_table

TYPE_CODES = {"clicks": 0, "carts": 1, "orders": 2}


def prepare(args: argparse.Namespace) -> None:
    table = pl.read_csv(args.test, separator=args.separator)
    order = [args.session_col, args.ts_col]
    table = table.with_row_index("_row").sort([args.session_col, args.ts_col, "_row"]).drop("_row")
    lengths = table.group_by(args.session_col, maintain_order=True).len()["len"].to_numpy()
    keep = np.repeat(lengths >= 2, lengths)
    table, lengths = table.filter(pl.Series(keep)), lengths[lengths >= 2]
    cut = draw_cut_points(lengths, args.seed)
    observed = positions_in_session(lengths) < np.repeat(cut, lengths)
    prefixes, future = table.filter(pl.Series(observed)), table.filter(~pl.Series(observed))
    event_type = pl.col(args.type_col).replace_strict(TYPE_CODES) if args.type_col else pl.lit(0)
    future = future.select(
        session=pl.col(args.session_col).cast(pl.Int32),
        type=event_type.cast(pl.Int8),
        aid=pl.col(args.aid_col).cast(pl.Int32),
    )
    clicks = future.filter(pl.col("type") == 0).unique("session", keep="first", maintain_order=True)
    buys = future.filter(pl.col("type") > 0).unique(["session", "type", "aid"])
    labels = pl.concat([clicks, buys]).sort(["session", "type", "aid"])
    args.out.mkdir(parents=True, exist_ok=True)
    prefixes.sort(order).write_csv(args.out / "test_prefixes.tsv", separator="\t")
    labels.write_parquet(args.out / "labels.parquet")
    print(
        f"{len(lengths):,} test sessions: {prefixes.height:,} prefix events, {labels.height:,} labels -> {args.out}"
    )


def submission_candidates(path: Path) -> pl.DataFrame:
    """A submission CSV (``session_type, labels``) as a typed candidate table."""
    rows = pl.read_csv(path, schema={"session_type": pl.String, "labels": pl.String})
    parts = (
        rows["session_type"].str.split_exact("_", 1).struct.rename_fields(["session", "type"]).struct.unnest()
    )
    frame = pl.concat([parts, rows.select("labels")], how="horizontal").with_columns(
        aid=pl.col("labels").fill_null("").str.split(" ")
    )
    frame = (
        frame.explode("aid")
        .filter(pl.col("aid") != "")
        .with_columns(rank=pl.int_range(1, pl.len() + 1).over(["session", "type"]))
    )
    return frame.select(
        session=pl.col("session").cast(pl.Int32),
        type=pl.col("type").replace_strict(TYPE_CODES).cast(pl.Int8),
        rank=pl.col("rank").cast(pl.Int32),
        aid=pl.col("aid").cast(pl.Int32),
        score=(-pl.col("rank")).cast(pl.Float32),
        model=pl.lit(path.stem.removeprefix("submission_")),
    )


def score(args: argparse.Namespace) -> None:
    labels = pl.read_parquet(args.labels)
    results = {
        path.stem.removeprefix("submission_"): evaluate(submission_candidates(path), labels)
        for path in args.submissions
    }
    print(metrics_table(results))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare")
    prep.add_argument("--test", type=Path, required=True)
    prep.add_argument("--out", type=Path, required=True)
    prep.add_argument("--separator", default="\t")
    prep.add_argument("--session-col", default="SessionId")
    prep.add_argument("--aid-col", default="ItemId")
    prep.add_argument("--ts-col", default="Time")
    prep.add_argument("--type-col", default=None)
    prep.add_argument("--seed", type=int, default=42)
    sc = sub.add_parser("score")
    sc.add_argument("--labels", type=Path, required=True)
    sc.add_argument("submissions", type=Path, nargs="+")
    args = parser.parse_args()
    prepare(args) if args.command == "prepare" else score(args)


if __name__ == "__main__":
    main()
