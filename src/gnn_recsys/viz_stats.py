"""kedro-viz dataset statistics for polars tables.

kedro-viz's own statistics hook counts rows and columns of pandas frames only, so every dataset of this
project (polars) read "N/A" in the viz metadata panel. This subclass adds polars frames and is
registered in ``settings.py`` in place of the plugin's instance.
"""

from __future__ import annotations

from typing import Any

import polars as pl
from kedro_viz.integrations.kedro.hooks import DatasetStatsHook


class PolarsDatasetStatsHook(DatasetStatsHook):
    """Rows, columns and file size of every polars frame a run loads or saves, in ``.viz/stats.json``."""

    def create_dataset_stats(self, dataset_name: str, data: Any) -> None:
        if not isinstance(data, pl.DataFrame):
            super().create_dataset_stats(dataset_name, data)
            return
        stats = self._stats[self.get_stats_dataset_name(dataset_name)]
        stats["rows"], stats["columns"] = data.height, data.width
        dataset = self.datasets.get(dataset_name) if hasattr(self, "datasets") else None
        size = self.get_file_size(dataset) if dataset is not None else None
        if size:
            stats["file_size"] = size
