"""Exact top-K over a catalogue too large for one ``[B, num_items]`` score matrix."""

from __future__ import annotations

import torch
from torch import Tensor

from gnn_recsys.models.loss import add_history_bonus


def topk_blocked(
    query: Tensor,
    item_embedding: Tensor,
    k: int,
    block_size: int = 65_536,
    history: tuple[Tensor, Tensor] | None = None,
) -> tuple[Tensor, Tensor]:
    """Top-``k`` items (indices, scores) of ``query @ item_embedding.T`` scanning the items in blocks.

    ``history = (items [B, H], bonus [B, H])`` adds each session's repeat bonus to its own items.
    Memory is ``[B, block_size + k]`` instead of ``[B, num_items]``; ties keep the lower item index
    first within a block (``torch.topk`` order), and merging is exact.
    """
    n_items = item_embedding.shape[0]
    k = min(k, n_items)
    best_score = query.new_full((query.shape[0], 0), float("-inf"), dtype=torch.float32)
    best_index = torch.zeros((query.shape[0], 0), dtype=torch.long, device=query.device)
    for start in range(0, n_items, block_size):
        block = item_embedding[start : start + block_size]
        scores = add_history_bonus((query @ block.to(query.dtype).T).float(), history, offset=start)
        top_score, top_index = torch.topk(scores, min(k, scores.shape[1]), dim=1)
        merged_score = torch.cat([best_score, top_score], dim=1)
        merged_index = torch.cat([best_index, top_index + start], dim=1)
        best_score, pick = torch.topk(merged_score, min(k, merged_score.shape[1]), dim=1)
        best_index = torch.gather(merged_index, 1, pick)
    return best_index, best_score
