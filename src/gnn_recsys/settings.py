"""Kedro project settings.

Only what differs from Kedro's defaults is set here. kedro-mlflow registers its hooks itself
(through its entry point); the project's hooks check ``--params`` and name, tag and close the MLflow
runs (``gnn_recsys.hooks``), and in the ``spark`` environment start Spark (``gnn_recsys.spark.hooks``).
"""

import os
import warnings

from kedro.config import OmegaConfigLoader

from gnn_recsys.hooks import MlflowRunHook, ParamsValidationHook
from gnn_recsys.spark.hooks import SparkHooks


def _env(name: str, default: str | None = None) -> str | None:
    """``${env:NAME,default}`` in config files: Kedro disables ``oc.env`` outside credentials."""
    return os.environ.get(name, default)


# omegaconf 2.4 deprecates register_new_resolver(), which Kedro 1.7 and kedro-mlflow 2.0 still call
# (five warnings on every run, none about this project). Remove when either moves to register_resolver().
warnings.filterwarnings("ignore", message=r"register_new_resolver\(\) is deprecated", category=UserWarning)

HOOKS = (ParamsValidationHook(), MlflowRunHook(), SparkHooks())

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    "custom_resolvers": {"env": _env},
    # spark: the SparkSession's settings, read by SparkHooks (only conf/spark has them)
    "config_patterns": {"mlflow": ["mlflow*", "mlflow*/**"], "spark": ["spark*", "spark*/**"]},
    # An environment (conf/quick, conf/otto, conf/local) overrides single keys of the base parameters
    # (dgsr.train.epochs) without having to repeat the rest of their mapping.
    "merge_strategy": {"parameters": "soft"},
}
