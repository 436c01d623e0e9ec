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
    # An environment's parameters merge key by key over base (conf/paper sets a few dgsr.model keys
    # without repeating the rest); Kedro's default would replace each top-level key whole.
    "merge_strategy": {"parameters": "soft"},
}
