"""Tensors and plain values (state dicts, configs) as one ``torch.save`` file, written atomically.

Loaded with ``weights_only=True``: a file holding pickled objects of other types (which could run
code on load) is refused with a ``DatasetError``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from kedro.io import AbstractDataset


class TorchDataset(AbstractDataset[Any, Any]):
    """``torch.save`` to a temporary file, then rename, so a crash never leaves half a model."""

    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        self._filepath = Path(filepath)
        self.metadata = metadata

    def load(self) -> Any:
        return torch.load(self._filepath, map_location="cpu", weights_only=True)

    def save(self, data: Any) -> None:
        self._filepath.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._filepath.with_suffix(self._filepath.suffix + ".tmp")
        torch.save(data, tmp)
        os.replace(tmp, self._filepath)

    def _exists(self) -> bool:
        return self._filepath.exists()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}
