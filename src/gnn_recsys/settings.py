"""Kedro project settings.

Only what differs from Kedro's defaults is set here. kedro-mlflow registers its hooks itself
(through its entry point), so no ``HOOKS`` are needed.
"""

import os

from kedro.config import OmegaConfigLoader


def _env(name: str, default: str | None = None) -> str | None:
    """``${env:NAME,default}`` in config files: Kedro disables ``oc.env`` outside credentials."""
    return os.environ.get(name, default)


HOOKS: tuple = ()  # the project's hooks; kedro-viz's statistics hooks are appended at the end

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    "custom_resolvers": {"env": _env},
    "config_patterns": {"mlflow": ["mlflow*", "mlflow*/**"]},
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
