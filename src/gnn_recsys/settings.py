"""Kedro project settings.

Only what differs from Kedro's defaults is set here. kedro-mlflow registers its hooks itself
(through its entry point), so no ``HOOKS`` are needed.
"""

import os

from kedro.config import OmegaConfigLoader


def _env(name: str, default: str | None = None) -> str | None:
    """``${env:NAME,default}`` in config files: Kedro disables ``oc.env`` outside credentials."""
    return os.environ.get(name, default)


CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    "custom_resolvers": {"env": _env},
    "config_patterns": {"mlflow": ["mlflow*", "mlflow*/**"]},
    # conf/local/ (and other envs) override single parameters, not whole top-level sections: a file
    # with only `dgsr: {train: {lr: ...}}` (e.g. tuning's best parameters) keeps the rest of `dgsr`.
    "merge_strategy": {"parameters": "soft"},
}
