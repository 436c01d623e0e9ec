"""Preprocessing on Apache Spark: ingestion, the local-validation split and co-visitation counting.

The same tables as the default polars/DuckDB path (``gnn_recsys.data``, ``gnn_recsys.baselines``),
computed with Spark DataFrames so that they scale past one machine. Knows nothing of Kedro; the
``spark`` Kedro environment (``conf/spark/``) wires it in. Needs the optional dependency ``pyspark``
(``pip install -e ".[spark]"``) and Java 17+.

Spark DataFrames have no row order, so a Spark event table carries one more column than the contract:
``pos`` (Int32), the event's position in its session in file order. :func:`to_polars` sorts by
``session, pos`` and drops it, giving exactly the default path's table.
"""
