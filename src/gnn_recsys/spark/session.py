"""The SparkSession: one per process, created by the Kedro hook or by tests, with settings that suit
small local runs (no UI, few shuffle partitions, UTC) unless the configuration says otherwise."""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from typing import Any

from pyspark.sql import SparkSession

#: Defaults under any user configuration: local mode on every core, no web UI, a small number of
#: shuffle partitions (the default 200 costs seconds of scheduling on tiny data), UTC timestamps.
DEFAULT_CONF: Mapping[str, str] = {
    "spark.master": "local[*]",
    "spark.app.name": "gnn_recsys",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.shuffle.partitions": "8",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.adaptive.enabled": "true",
    "spark.driver.memory": "2g",
}


def spark_session(conf: Mapping[str, Any] | None = None, log_level: str = "WARN") -> SparkSession:
    """Get or create the process's SparkSession with :data:`DEFAULT_CONF` updated by ``conf``.

    A session that already runs is returned as it is (Spark allows one per JVM); its static settings
    (master, driver memory) cannot change any more.
    """
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        raise RuntimeError(
            "Spark needs Java 17 or newer and none was found (no `java` on PATH, JAVA_HOME unset); "
            "install it, e.g. `apt-get install openjdk-17-jre-headless`, or run without --env spark"
        )
    settings = {**DEFAULT_CONF, **{str(k): str(v) for k, v in (conf or {}).items()}}
    builder = SparkSession.builder
    for key, value in settings.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel(log_level)
    return session
