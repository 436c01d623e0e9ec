"""Kedro project settings.

Only what differs from Kedro's defaults is set here. kedro-mlflow registers its hooks itself
(through its entry point); the project's hooks check ``--params`` and name, tag and close the MLflow
runs and time each node (``gnn_recsys.hooks``), and in the ``spark`` environment start Spark (``gnn_recsys.spark.hooks``).
"""

import os
import warnings

from kedro.config import OmegaConfigLoader

from gnn_recsys.hooks import MlflowRunHook, NodeTimingHook, ParamsValidationHook
from gnn_recsys.spark.hooks import SparkHooks


def _env(name: str, default: str | None = None) -> str | None:
    """``${env:NAME,default}`` in config files: Kedro disables ``oc.env`` outside credentials."""
    return os.environ.get(name, default)


# omegaconf 2.4 deprecates register_new_resolver(), which Kedro 1.7 and kedro-mlflow 2.0 still call
# (five warnings on every run, none about this project). Remove when either moves to register_resolver().
warnings.filterwarnings("ignore", message=r"register_new_resolver\(\) is deprecated", category=UserWarning)

HOOKS = (
    ParamsValidationHook(),
    MlflowRunHook(),
    NodeTimingHook(),
    SparkHooks(),
)  # kedro-viz's statistics hooks are appended at the end

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    "custom_resolvers": {"env": _env},
    # spark: the SparkSession's settings, read by SparkHooks (only conf/spark has them)
    "config_patterns": {"mlflow": ["mlflow*", "mlflow*/**"], "spark": ["spark*", "spark*/**"]},
    # An environment's parameters merge key by key over base (conf/quick, conf/paper, conf/otto and
    # conf/local set a few keys without repeating the rest); Kedro's default replaces top-level keys whole.
    "merge_strategy": {"parameters": "soft"},
}

# kedro-viz (a dev tool, absent from a bare runtime install) collects dataset statistics for its
# metadata panel; its hook knows only pandas, ours adds polars, so the plugin's hooks are replaced by
# ours and a fresh instance of its run-status hook.
try:
    from kedro_viz.integrations.kedro.run_hooks import PipelineRunStatusHook

    from gnn_recsys.viz_stats import PolarsDatasetStatsHook
except ImportError:  # pragma: no cover - kedro-viz not installed
    VIZ_HOOKS: tuple = ()
else:
    VIZ_HOOKS = (PolarsDatasetStatsHook(), PipelineRunStatusHook())
    DISABLE_HOOKS_FOR_PLUGINS = ("kedro-viz",)

HOOKS = (*HOOKS, *VIZ_HOOKS)
