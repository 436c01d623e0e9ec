"""Kedro hooks of the ``spark`` environment (registered in ``settings.HOOKS`` for every run).

* ``after_context_created``: when the environment has Spark settings (``conf/<env>/spark.yml``), the
  SparkSession is created from them once, before any dataset is loaded (the Kedro docs' way);
  otherwise nothing happens and pyspark is not even imported.
* ``before_node_run``: a node that is not :func:`~gnn_recsys.pipelines.engine.spark_native` gets its
  Spark DataFrame inputs as polars tables (:func:`gnn_recsys.spark.events.to_polars`), so the
  single-machine stages downstream run unchanged.
"""

from __future__ import annotations

import logging
from typing import Any

from kedro.config import MissingConfigException
from kedro.framework.hooks import hook_impl

from gnn_recsys.pipelines.engine import is_spark_frame, is_spark_native

logger = logging.getLogger(__name__)


class SparkHooks:
    def __init__(self) -> None:
        self.active = False

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        try:
            conf = context.config_loader["spark"]
        except MissingConfigException:
            conf = {}
        self.active = bool(conf)
        if not self.active:
            return
        from gnn_recsys.spark.session import spark_session  # noqa: PLC0415 (pyspark is optional)

        settings = {"spark.app.name": context.project_path.name, **conf}
        session = spark_session(settings)
        logger.info("SparkSession %s on %s", session.version, session.sparkContext.master)

    @hook_impl
    def before_node_run(self, node: Any, inputs: dict[str, Any]) -> dict[str, Any] | None:
        if not self.active or is_spark_native(node.func):
            return None
        spark_inputs = [name for name, value in inputs.items() if is_spark_frame(value)]
        if not spark_inputs:
            return None
        from gnn_recsys.spark.events import to_polars  # noqa: PLC0415

        logger.info("%s: Spark inputs %s handed over as polars tables", node.name, spark_inputs)
        return {name: to_polars(inputs[name]) for name in spark_inputs}
