"""Exact top-K over a catalogue too large for one ``[B, num_items]`` score matrix."""

from __future__ import annotations

import torch
from torch import Tensor

from gnn_recsys.models.loss import add_history_bonus


def topk_chunked(
    scores: Tensor, k: int, chunk: int = 32, *, interleaved: bool | None = None
) -> tuple[Tensor, Tensor]:
    """``torch.topk(scores, k, dim=1)`` (values, indices) through the maxima of column groups.

    The columns fall into groups of ``chunk``; a row's ``k`` best columns lie in its ``k`` groups with
    the highest maxima (a column outside them is beaten by ``k`` group maxima), so one bandwidth-bound
    max pass and two small top-Ks replace the radix selection over all ``N`` columns. Exact up to the
    order of tied scores. Columns past the last whole group get a plain top-K of their own and are
    merged. ``chunk=0``: plain ``torch.topk``.

    ``interleaved`` picks the grouping (any partition is exact; they differ in how fast the maxima
    reduce): group ``g`` holds columns ``g, g + G, g + 2G, ...`` (``G = N // chunk``; the max of
    ``chunk`` contiguous slices, which a GPU reduces at memory speed) or ``chunk`` adjacent columns
    (a CPU reduces those faster: 4.4 vs 7.4 ms for a 512 x 65,536 block at 2 threads, while on an
    H200 that inner reduction took 62% of scoring time). ``None``: interleaved off the CPU. Scoring
    1.67M sessions over 1.86M items on an H200: 47.3 s plain, 20.4 s interleaved
    (``benchmarks/README.md``).
    """
    num_rows, num_cols = scores.shape
    k = min(k, num_cols)
    groups = num_cols // chunk if chunk > 0 else 0
    if groups <= 2 * k:  # plain top-K asked for, or too few groups to pay for the extra passes
        return torch.topk(scores, k, dim=1)
    whole = groups * chunk
    if interleaved is None:
        interleaved = scores.device.type != "cpu"
    if interleaved:  # [B, chunk, G] -> the group's maxima over dim 1; the same view as [B, G, chunk]
        members = scores[:, :whole].view(num_rows, chunk, groups)
        maxima, grouped = members.amax(dim=1), members.transpose(1, 2)
        group_step, member_step = 1, groups
    else:  # [B, G, chunk]: no copy, splits the unit stride
        grouped = scores[:, :whole].view(num_rows, groups, chunk)
        maxima = grouped.amax(dim=2)
        group_step, member_step = chunk, 1
    top_group = maxima.topk(k, dim=1).indices  # [B, k]
    candidates = torch.gather(grouped, 1, top_group.unsqueeze(2).expand(-1, -1, chunk))  # [B, k, chunk]
    member = torch.arange(chunk, device=scores.device) * member_step
    column = top_group.unsqueeze(2) * group_step + member  # [B, k, chunk]
    value, pick = candidates.reshape(num_rows, k * chunk).topk(k, dim=1)
    index = torch.gather(column.reshape(num_rows, k * chunk), 1, pick)
    if whole < num_cols:
        tail_value, tail_index = torch.topk(scores[:, whole:], min(k, num_cols - whole), dim=1)
        value, pick = torch.cat([value, tail_value], dim=1).topk(k, dim=1)
        index = torch.gather(torch.cat([index, tail_index + whole], dim=1), 1, pick)
    return value, index


def topk_blocked(
    query: Tensor,
    item_embedding: Tensor,
    k: int,
    block_size: int = 65_536,
    history: tuple[Tensor, Tensor] | None = None,
    *,
    chunk: int = 32,
) -> tuple[Tensor, Tensor]:
    """Top-``k`` items (indices, scores) of ``query @ item_embedding.T`` scanning the items in blocks.

    ``history = (items [B, H], bonus [B, H])`` adds each session's repeat bonus to its own items.
    Memory is ``[B, block_size + k]`` instead of ``[B, num_items]``; each block's top-K goes through
    :func:`topk_chunked` (``chunk=0``: plain ``torch.topk``) and merging is exact (the order of
    exactly tied scores is not fixed).

    The product is taken in float32 even under autocast: bf16 scores (8 bits of mantissa) changed the
    top-20 set of 45% of random d = 64 sessions over 1.86M items; on an H200 float32 scoring took
    99.6 ms per 8,192 sessions against 93.6 ms for the bf16 product and its float32 copy.
    """
    n_items = item_embedding.shape[0]
    k = min(k, n_items)
    query = query.float()
    best_score = query.new_full((query.shape[0], 0), float("-inf"))
    best_index = torch.zeros((query.shape[0], 0), dtype=torch.long, device=query.device)
    for start in range(0, n_items, block_size):
        block = item_embedding[start : start + block_size].float()
        with torch.autocast(query.device.type, enabled=False):
            scores = query @ block.T
        scores = add_history_bonus(scores, history, offset=start)
        top_score, top_index = topk_chunked(scores, k, chunk)
        merged_score = torch.cat([best_score, top_score], dim=1)
        merged_index = torch.cat([best_index, top_index + start], dim=1)
        best_score, pick = torch.topk(merged_score, min(k, merged_score.shape[1]), dim=1)
        best_index = torch.gather(merged_index, 1, pick)
    return best_index, best_score


def recent_history_items(
    history_item: Tensor,
    history_slot: Tensor,
    history_order: Tensor,
    keep: int,
    history_type: Tensor | None = None,
) -> Tensor:
    """``[B, H]`` the session's ``keep`` most recent distinct items of ``history_item``, -1 elsewhere.

    ``history_slot`` maps each prefix event to its item's slot in the flat ``[B * H]`` layout and
    ``history_order`` is the event's relative order (0 = the latest): an item's recency is that of
    its latest occurrence. With ``history_type`` (each event's type code) items rank first by the
    strongest type they had (ordered, then carted, then clicked), then by recency.
    """
    num_samples, width = history_item.shape
    never = torch.iinfo(torch.long).max
    recency = torch.full((num_samples * width,), never, dtype=torch.long, device=history_item.device)
    recency.scatter_reduce_(0, history_slot, history_order.long(), reduce="amin")
    if history_type is not None:
        strongest = torch.zeros(num_samples * width, dtype=torch.long, device=history_item.device)
        strongest.scatter_reduce_(0, history_slot, history_type.long(), reduce="amax")
        recency = torch.where(recency == never, never, recency + (2 - strongest) * (1 << 32))
    recency = torch.where(history_item >= 0, recency.view(num_samples, width), never)
    rank = recency.argsort(dim=1, stable=True).argsort(dim=1)
    return torch.where((rank < keep) & (history_item >= 0), history_item, -1)


def keep_items_in_window(
    index: Tensor, score: Tensor, kept: Tensor, kept_score: Tensor
) -> tuple[Tensor, Tensor]:
    """Rewrite top lists ``index, score [B, k]`` so that their first ``W = kept.shape[1]`` slots hold
    every item of ``kept [B, W]`` (-1 = none) and the best-scored other items after them.

    Window and tail stay sorted by score each: the window is the ``g`` kept items plus the ``W - g``
    best other items; the tail continues with the other items in score order. ``kept_score`` are the
    kept items' own scores, so a kept item already in ``index`` keeps its place if it earned it.
    """
    window = kept.shape[1]
    is_kept = kept >= 0
    duplicate = (index.unsqueeze(2) == kept.unsqueeze(1)).any(dim=2)  # [B, k]
    kept_count = is_kept.sum(dim=1, keepdim=True)
    other_rank = (~duplicate).long().cumsum(dim=1) - 1
    # tier 0: the window, 1: the tail, 2: dropped (padding, or a kept item's second copy)
    other_tier = torch.where(duplicate, 2, torch.where(other_rank < window - kept_count, 0, 1))
    kept_tier = torch.where(is_kept, 0, 2)
    items = torch.cat([kept, index], dim=1)
    scores = torch.cat([kept_score.to(score.dtype), score], dim=1)
    tier = torch.cat([kept_tier, other_tier], dim=1)
    order = scores.argsort(dim=1, descending=True, stable=True)
    order = torch.gather(order, 1, torch.gather(tier, 1, order).argsort(dim=1, stable=True))
    order = order[:, : index.shape[1]]
    return torch.gather(items, 1, order), torch.gather(scores, 1, order)
