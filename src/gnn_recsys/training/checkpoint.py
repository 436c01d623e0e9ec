"""Checkpoints of plain tensors and plain Python values, loaded with ``weights_only=True``.

``torch.load(weights_only=False)`` unpickles arbitrary objects, so a shared checkpoint could run code
on load. Everything here is a state dict, a tensor or a JSON-like value, and every load path refuses
anything else.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger(__name__)

CHECKPOINT_FILE = "last.pt"


def save_atomic(state: dict[str, Any], path: Path) -> None:
    """Write ``state`` to ``path`` so that a crash leaves either the old or the new file, never half."""
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "wb") as handle:
        torch.save(state, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def load_safely(path: str | Path) -> Any:
    """``torch.load`` on CPU that only accepts tensors and plain values (no pickled code)."""
    return torch.load(path, map_location="cpu", weights_only=True)


def prepare_checkpoint_dir(checkpoint_dir: str | Path | None) -> Path | None:
    """The checkpoint file in ``checkpoint_dir`` (created), after removing torn temporary files."""
    if checkpoint_dir is None:
        return None
    directory = Path(checkpoint_dir)
    directory.mkdir(parents=True, exist_ok=True)
    for leftover in directory.glob(f"{CHECKPOINT_FILE}.tmp*"):  # from a run killed while writing
        logger.info("Removing incomplete checkpoint %s", leftover)
        leftover.unlink(missing_ok=True)
    return directory / CHECKPOINT_FILE


def cpu_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of ``model``'s state dict."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
