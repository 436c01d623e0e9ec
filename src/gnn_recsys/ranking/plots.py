"""Figures of the ranker's training report (feature importance, validation curves).

Built on ``matplotlib.figure.Figure`` directly (no pyplot state, no display backend), so they render
headless inside a pipeline run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from matplotlib.figure import Figure


def _lightgbm_types(report: Mapping[str, Any]) -> list[str]:
    return [name for name, entry in report.items() if "curve" in entry]


def _no_lightgbm(figure: Figure) -> Figure:
    """The figure with a note instead of panels: every type fell back to a blend."""
    axis = figure.add_subplot(1, 1, 1)
    axis.text(0.5, 0.5, "no LightGBM model trained (blend fallback)", ha="center", va="center")
    axis.set_axis_off()
    return figure


def feature_importance_figure(report: Mapping[str, Any], top: int = 25) -> Figure:
    """Horizontal bars of each type's LightGBM gain importance (top ``top`` features)."""
    types = _lightgbm_types(report)
    figure = Figure(figsize=(6 * max(len(types), 1), 0.3 * top + 1.5))
    if not types:
        return _no_lightgbm(figure)
    for i, name in enumerate(types, start=1):
        gain = sorted(report[name]["importance_gain"].items(), key=lambda kv: kv[1], reverse=True)[:top]
        axis = figure.add_subplot(1, len(types), i)
        labels = [feature for feature, _ in reversed(gain)]
        axis.barh(labels, [value for _, value in reversed(gain)], color="tab:blue")
        axis.set_title(f"{name} ranker: gain ({report[name]['chosen']} chosen)")
        axis.tick_params(axis="y", labelsize=7)
    figure.tight_layout()
    return figure


def validation_curve_figure(report: Mapping[str, Any]) -> Figure:
    """NDCG@20 per boosting round on the training and held-out sessions, one panel per type."""
    types = _lightgbm_types(report)
    figure = Figure(figsize=(5 * max(len(types), 1), 4))
    if not types:
        return _no_lightgbm(figure)
    for i, name in enumerate(types, start=1):
        axis = figure.add_subplot(1, len(types), i)
        for split, metrics in report[name]["curve"].items():
            for metric, values in metrics.items():
                axis.plot(range(1, len(values) + 1), values, label=f"{split} {metric}")
        axis.axvline(report[name]["best_iteration"], color="grey", linestyle="--", linewidth=1)
        axis.set_title(f"{name}")
        axis.set_xlabel("boosting round")
        axis.legend(fontsize=7)
    figure.tight_layout()
    return figure
