"""Matplotlib figures of the evaluation breakdowns and of DGSR's training history.

Figures are built with ``matplotlib.figure.Figure`` (no pyplot state, no display needed); the Kedro
catalog saves them (kedro-datasets' ``MatplotlibDataset``) and logs them to MLflow.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import polars as pl
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

TYPES = ("clicks", "carts", "orders")


def _by_type_axes(title: str) -> tuple[Figure, dict[str, Any]]:
    figure = Figure(figsize=(13, 4), layout="constrained")
    axes = figure.subplots(1, len(TYPES), sharey=True)
    figure.suptitle(title)
    for ax, name in zip(axes, TYPES, strict=True):
        ax.set_title(name)
        ax.grid(alpha=0.3)
    return figure, dict(zip(TYPES, axes, strict=True))


def recall_at_k_figure(curves: pl.DataFrame, cutoff: int = 20) -> Figure:
    """One panel per type, recall@K against K for every model (``model, k, type, recall`` rows)."""
    figure, axes = _by_type_axes("Local validation: recall@K (official definition at every K)")
    for (model,), frame in curves.group_by("model", maintain_order=True):
        for (name,), of_type in frame.group_by("type", maintain_order=True):
            axes[name].plot(of_type["k"], of_type["recall"], label=model)
    for name, ax in axes.items():
        ax.axvline(cutoff, color="grey", linestyle=":", linewidth=1)
        ax.set_xlabel("K")
        if name == TYPES[0]:
            ax.set_ylabel("recall@K")
            ax.legend()
    return figure


def recall_by_length_figure(frame: pl.DataFrame, k: int = 20) -> Figure:
    """One panel per type, recall@k by the session's input length for every model."""
    figure, axes = _by_type_axes(f"Local validation: recall@{k} by session length (events before the cut)")
    order = list(dict.fromkeys(frame["length"].to_list()))
    for (model,), of_model in frame.group_by("model", maintain_order=True):
        for (name,), of_type in of_model.group_by("type", maintain_order=True):
            x = [order.index(length) for length in of_type["length"]]
            axes[name].plot(x, of_type["recall"], marker="o", label=model)
    for name, ax in axes.items():
        ax.set_xticks(range(len(order)), order)
        ax.set_xlabel("session length")
        if name == TYPES[0]:
            ax.set_ylabel(f"recall@{k}")
            ax.legend()
    return figure


def popularity_figure(frame: pl.DataFrame, k: int = 20) -> Figure:
    """Grouped bars: share of the top-``k`` slots by item-popularity decile, one bar per model (and the
    train events' own share, what a recommender copying the data's popularity would give)."""
    figure = Figure(figsize=(10, 4.5), layout="constrained")
    ax = figure.subplots()
    series = list(dict.fromkeys(frame["model"].to_list()))
    deciles = list(dict.fromkeys(frame["decile"].to_list()))
    width = 0.8 / max(len(series), 1)
    for i, model in enumerate(series):
        of_model = frame.filter(pl.col("model") == model)
        share = dict(zip(of_model["decile"], of_model["share"], strict=True))
        x = [j + (i - (len(series) - 1) / 2) * width for j in range(len(deciles))]
        ax.bar(x, [share.get(d, 0.0) for d in deciles], width=width, label=model)
    ax.set_xticks(range(len(deciles)), deciles)
    ax.set_xlabel("item popularity decile in the train events (1 = the 10% most popular items)")
    ax.set_ylabel(f"share of top-{k} recommendations")
    ax.set_title("Which items the models recommend")
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    return figure


def training_curves_figure(history: Mapping[str, Any]) -> Figure:
    """Loss and validation metrics per epoch from a training history (``{"epochs": [{"epoch": 1,
    "train_loss": ..., "val_recall@20": ...}, ...]}``); keys with ``loss`` go left, ``val_`` right."""
    epochs = list(history.get("epochs", []))
    figure = Figure(figsize=(11, 4), layout="constrained")
    loss_ax, val_ax = figure.subplots(1, 2)
    x = [row["epoch"] for row in epochs]
    keys = list(dict.fromkeys(key for row in epochs for key in row))
    for key in keys:
        values = [row.get(key) for row in epochs]
        if "loss" in key:
            loss_ax.plot(x, values, marker="o", label=key)
        elif key.startswith("val_"):
            val_ax.plot(x, values, marker="o", label=key)
    best = history.get("best_epoch")
    for ax, title in ((loss_ax, "training loss"), (val_ax, "validation")):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if best is not None:
            ax.axvline(best, color="grey", linestyle=":", linewidth=1, label=f"best epoch ({best})")
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    figure.suptitle("DGSR training" if epochs else "DGSR training: no epochs recorded")
    return figure
