"""Co-visitation pair counting on Spark: the weighted item-pair table behind
:class:`gnn_recsys.baselines.covisitation.CovisitationModel` (its module docstring has the rules).

:func:`pair_weights` gives every co-visited pair with its weight summed over sessions;
:func:`top_neighbours` keeps each aid's heaviest neighbours, which is the fitted model's
``neighbours`` table. Per-event weights are computed with the same float32 type weights and float64
arithmetic in the same order as the polars path, so each session's pair weight is bit-identical, and
the sum over sessions is the same fixed-point sum (whole units of ``1 / WEIGHT_SCALE``, added as
integers), which does not depend on the order Spark adds its partitions in: the tables are equal to
the last bit.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from gnn_recsys.baselines.covisitation import CovisitationConfig
from gnn_recsys.data.schema import EVENT_TYPE_CODES
from gnn_recsys.fixed_point import WEIGHT_SCALE


def _type_weight(column: Column, weights: dict[int, float]) -> Column:
    missing = sorted(set(EVENT_TYPE_CODES.values()) - set(weights))
    if missing:
        raise ValueError(f"type weights lack event type code(s) {missing}; got {dict(weights)}")
    expr = None
    for code, weight in weights.items():
        value = F.lit(float(weight)).cast(T.FloatType()).cast(T.DoubleType())
        expr = F.when(column == code, value) if expr is None else expr.when(column == code, value)
    assert expr is not None
    return expr


def weighted_recent_events(events: DataFrame, config: CovisitationConfig) -> DataFrame:
    """The last ``max_events_per_session`` events of sessions with >= 2 of them, with their ``weight``."""
    bounds = events.agg(F.min("ts").alias("lo"), F.max("ts").alias("hi")).first()
    assert bounds is not None
    t_min, t_max = int(bounds["lo"]), int(bounds["hi"])
    slope = (config.time_weight_max - config.time_weight_min) / max(t_max - t_min, 1)
    time_weight = F.lit(float(config.time_weight_min)) + (F.col("ts") - F.lit(t_min)).cast(
        T.DoubleType()
    ) * F.lit(slope)
    session = Window.partitionBy("session")
    keep = config.max_events_per_session
    ranked = events.withColumn("_n", F.count(F.lit(1)).over(session)).withColumn(
        "_rank", F.row_number().over(session.orderBy("pos")) - 1
    )
    recent = ranked.filter((F.col("_rank") >= F.col("_n") - keep) & (F.least(F.col("_n"), F.lit(keep)) >= 2))
    return recent.select(
        "session",
        "aid",
        "ts",
        (_type_weight(F.col("type"), dict(config.type_weights)) * time_weight).alias("weight"),
    )


def pair_weights(events: DataFrame, config: CovisitationConfig | None = None) -> DataFrame:
    """``aid, neighbour, weight``: every co-visited pair and its weight summed over sessions.

    ``events`` is a Spark event table with ``pos`` (train events plus observed test prefixes, as the
    baseline fits on). A pair counts once per session with the largest weight it reached there.
    """
    config = CovisitationConfig() if config is None else config
    recent = weighted_recent_events(events, config)
    left = recent.select("session", "aid", "ts")
    right = recent.select("session", F.col("aid").alias("neighbour"), F.col("ts").alias("ts_nb"), "weight")
    return (
        left.join(right, on="session")
        .filter(
            (F.col("aid") != F.col("neighbour"))
            & (F.abs(F.col("ts") - F.col("ts_nb")) < F.lit(config.time_window_ms))
        )
        .groupBy("session", "aid", "neighbour")
        .agg(F.max("weight").alias("weight"))
        .groupBy("aid", "neighbour")
        .agg((F.sum(F.floor(F.col("weight") * F.lit(WEIGHT_SCALE))) / F.lit(WEIGHT_SCALE)).alias("weight"))
    )


def top_neighbours(pairs: DataFrame, top: int) -> DataFrame:
    """Each aid's ``top`` heaviest neighbours (ties: smaller neighbour), typed as the model's table."""
    order = Window.partitionBy("aid").orderBy(F.col("weight").desc(), F.col("neighbour").asc())
    return (
        pairs.withColumn("_rank", F.row_number().over(order))
        .filter(F.col("_rank") <= top)
        .select(
            F.col("aid").cast(T.IntegerType()),
            F.col("neighbour").cast(T.IntegerType()),
            F.col("weight").cast(T.FloatType()),
        )
    )
