"""Which engine a node runs on, without importing pyspark (an optional dependency).

The pipelines are the same in every environment; the ``spark`` environment (``conf/spark/``) only
changes the catalog (event tables as Spark parquet datasets) and one parameter. A node that can work on
Spark tables is marked :func:`spark_native` and dispatches on what it is given; every other node gets
polars tables, converted from Spark by :class:`gnn_recsys.spark.hooks.SparkHooks` before it runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

_MARK = "_gnn_recsys_spark_native"


def spark_native(func: F) -> F:
    """Mark a node function as taking Spark DataFrames as they are (no conversion to polars)."""
    setattr(func, _MARK, True)
    return func


def is_spark_native(func: Callable[..., Any]) -> bool:
    return bool(getattr(func, _MARK, False))


def is_spark_frame(value: Any) -> bool:
    """A pyspark DataFrame (classic or Spark Connect), recognised without importing pyspark."""
    cls = type(value)
    return cls.__name__ == "DataFrame" and cls.__module__.startswith("pyspark.sql")
