"""Sums that do not depend on the order of their rows.

Float addition is not associative, and polars hands a group's rows to a sum in an order that depends
on chunking, on joins and, in its streaming engine (the default of ``LazyFrame.collect``), on thread
timing.  A float sum can then differ in its last bit between two runs, or between a chunked and a
whole computation, and swap two candidates that tie.  Here each value is rounded down to whole units
of ``1 / scale`` and the integers are summed: integer addition is exact, so the total is the same in
any order (and on Spark, which adds partition by partition).  Each value moves by less than one unit.
"""

from __future__ import annotations

import polars as pl

# Units per 1.0.  Int64 sums hold up to 2**63 units: 2**31 at WEIGHT_SCALE (co-visitation pair
# weights, <= ~10 per session, summed over sessions), 2**27 at SCORE_SCALE (a session's scores).
WEIGHT_SCALE = 2.0**32
SCORE_SCALE = 2.0**36


def fixed_point(value: pl.Expr, scale: float) -> pl.Expr:
    """``value`` in whole units of ``1 / scale`` (Int64, rounded down): sums of these are exact."""
    return (value * scale).floor().cast(pl.Int64)


def exact_sum(value: pl.Expr, scale: float = SCORE_SCALE) -> pl.Expr:
    """A group's sum of ``value`` as Float64, the same in whatever order its rows come."""
    return fixed_point(value, scale).sum().cast(pl.Float64) / scale
