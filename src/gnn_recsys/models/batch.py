"""DGSR model input: a sampler subgraph turned into per-hop tensors (built in DataLoader workers).

``make_batch`` is numpy only and runs next to the sampler in the loader's workers; the model sees
:class:`DGSRBatch` tensors only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from torch.utils.data import get_worker_info

from gnn_recsys.graph.sampler import context_events
from gnn_recsys.graph.temporal_graph import gatherable
from gnn_recsys.models.conv.dgrn_conv import ChildLayout

NUM_EVENT_TYPES = 3


@dataclass
class HopBlock:
    """Tensors of one hop ``h >= 1`` of a batch: its nodes, how they hang below hop ``h-1``, context.

    The hop's states live in *rows*: one per node, except on the leaf hop (``h = L``) where identical
    nodes share a row (same item; same session edge event with the same context window), because
    there a state is a pure function of that key. ``layout.source`` maps nodes to rows.
    """

    node: Tensor  # [N_h] int64: item index (odd h) or session index (even h)
    layout: ChildLayout  # children = this hop, parents = hop h-1
    row_node: Tensor  # [R] int64: item / session index of each row
    context: Tensor | None = None  # [R, C] int64 into context_items, pad = len(context_items); even h
    context_items: Tensor | None = None  # [U] int64 distinct item indices of the hop's context windows

    def map(self, fn: Any) -> HopBlock:
        """The same hop with ``fn`` applied to every tensor, the layout's too."""

        def opt(t: Tensor | None) -> Tensor | None:
            return None if t is None else fn(t)

        return HopBlock(
            node=fn(self.node),
            layout=self.layout.map(fn),
            row_node=fn(self.row_node),
            context=opt(self.context),
            context_items=opt(self.context_items),
        )


@dataclass
class DGSRBatch:
    """Model input for ``num_samples`` samples: hops ``1..L`` plus readout helpers and (optional) targets."""

    hops: list[HopBlock]
    num_samples: int
    last_item: Tensor  # [B] int64 item index of the most recent prefix item, -1 = empty prefix
    prefix_count: Tensor  # [B] number of hop-1 items
    target: Tensor | None = None  # [B] int64 item index
    target_type: Tensor | None = None  # [B] int64 event type of the target (for type heads)
    # The session's own prefix items (hop 1), de-duplicated per sample, for the repeat bonus:
    history_item: Tensor | None = None  # [B, H] int64 item index, -1 = padding
    history_slot: Tensor | None = None  # [E1] flat index into [B * H] of each hop-1 edge
    history_order: Tensor | None = None  # [E1] the edge's relative order (0 = most recent)
    history_type: Tensor | None = None  # [E1] the edge's event type
    # New items next to the session's items in neighbour sessions (hop-2 context windows), for the
    # co-visitation bonus: one row per distinct (sample, item) outside the sample's history.
    neighbour_item: Tensor | None = None  # [B, M] int64 item index, -1 = padding
    neighbour_slot: Tensor | None = None  # [O] flat index into [B * M] of each occurrence
    neighbour_order: Tensor | None = None  # [O] relative order of the session item it came through
    neighbour_side: Tensor | None = None  # [O] context column it sits in (0..before+after-1)

    def map(self, fn: Any) -> DGSRBatch:
        """The same batch with ``fn`` applied to every tensor, the hops' too."""
        return DGSRBatch(
            **{
                f.name: ([hop.map(fn) for hop in value] if f.name == "hops" else
                         fn(value) if isinstance(value, Tensor) else value)
                for f in fields(self)
                for value in [getattr(self, f.name)]
            }
        )  # fmt: skip

    def tensors(self) -> list[Tensor]:
        """Every tensor of the batch, the hops' too, in :meth:`map`'s order."""
        found: list[Tensor] = []
        self.map(lambda t: found.append(t) or t)
        return found

    def to(self, device: torch.device | str, non_blocking: bool = False) -> DGSRBatch:
        """The batch with its tensors on ``device``."""
        return self.map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> DGSRBatch:
        return self.map(lambda t: t.pin_memory())

    def pack(self, *, narrow: bool = False) -> PackedBatch:
        """The batch as one byte buffer, for the hand-over from a loader worker (see :class:`PackedBatch`).

        ``narrow``: int64 tensors travel in the narrowest of int8/16/32 that holds their values and
        are widened again on arrival (a batch is all indices, types and positions, mostly small: ~3.6x
        fewer bytes to write, receive, pin and copy; worth it where widening is cheap, on a GPU).
        """
        tensors: list[Tensor] = []
        template = self.map(lambda t: tensors.append(t) or _SLOT)  # one walk: the leaves and the template
        stored = [narrowest_integer_dtype(t) if narrow else t.dtype for t in tensors]
        keys = sorted({(s, t.dtype) for s, t in zip(stored, tensors, strict=True)}, key=str)
        group_of = {key: g for g, key in enumerate(keys)}
        counts = [0] * len(keys)
        leaves = []
        for s, t in zip(stored, tensors, strict=True):
            g = group_of[(s, t.dtype)]
            leaves.append((g, counts[g], tuple(t.shape)))
            counts[g] += t.numel()
        groups, start = [], 0
        for (s, wide), count in zip(keys, counts, strict=True):
            groups.append((s, wide, start, count))
            start += math.ceil(count * s.itemsize / _ALIGN) * _ALIGN  # the next group starts aligned
        data = _byte_buffer(start)
        views = [data[begin : begin + count * s.itemsize].view(s) for s, _, begin, count in groups]
        for (g, offset, _), t in zip(leaves, tensors, strict=True):
            views[g][offset : offset + t.numel()].copy_(t.reshape(-1))  # narrows while copying
        return PackedBatch(data, tuple(groups), tuple(leaves), template)


def _byte_buffer(nbytes: int) -> Tensor:
    """An uninitialised uint8 buffer; in a DataLoader worker it is allocated in shared memory, so
    handing it to the main process copies nothing more (as torch's ``default_collate`` does)."""
    if get_worker_info() is None:
        return torch.empty(nbytes, dtype=torch.uint8)
    return torch.empty(0, dtype=torch.uint8).set_(torch.UntypedStorage._new_shared(nbytes))


_ALIGN = 8  # bytes: the largest element size, so that a group's bytes can be viewed as its dtype
_SLOT = torch.empty(0, dtype=torch.uint8)  # stands for every tensor in a packed batch's template


@dataclass
class PackedBatch:
    """A :class:`DGSRBatch` in one byte buffer: how loader workers hand batches to the main process.

    A tensor returned by a worker crosses in a shared-memory segment of its own; a batch has ~30, and
    receiving them cost the main process 7.1 ms for a batch of 512 samples (1.1 ms as one buffer) and
    14.7 ms for 8,192 narrowed ones (5.7 ms; ``benchmarks/bench_handover.py``, CPU). On a GPU the
    receiving thread shares the interpreter with the thread that launches the model's kernels, and
    one buffer is also one page-locked copy and one transfer instead of ~30.
    Tensors of one (stored, original) dtype pair lie side by side in a *group*; :meth:`to` moves the
    buffer, widens each narrowed group in one operation and gives every tensor back as a view.
    """

    data: Tensor  # [bytes] uint8
    groups: tuple[tuple[torch.dtype, torch.dtype, int, int], ...]  # (stored, original, byte start, numel)
    leaves: tuple[tuple[int, int, tuple[int, ...]], ...]  # per tensor in map order: (group, offset, shape)
    template: DGSRBatch  # the batch with every tensor replaced by a placeholder

    @property
    def num_samples(self) -> int:
        return self.template.num_samples

    def pin_memory(self) -> PackedBatch:
        return PackedBatch(self.data.pin_memory(), self.groups, self.leaves, self.template)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> DGSRBatch:
        """The :class:`DGSRBatch` on ``device``: one copy of the buffer, then views into it."""
        data = self.data.to(device, non_blocking=non_blocking)
        groups = []
        for stored, original, start, count in self.groups:
            group = data[start : start + count * stored.itemsize].view(stored)
            groups.append(group if stored == original else group.to(original))
        views = iter(
            [groups[g][offset : offset + math.prod(shape)].view(shape) for g, offset, shape in self.leaves]
        )
        return self.template.map(lambda _: next(views))


_NARROW_INTEGERS = (torch.int8, torch.int16, torch.int32)


def narrowest_integer_dtype(t: Tensor) -> torch.dtype:
    """The narrowest of int8/int16/int32 holding all values of an int64 tensor (other dtypes: their own)."""
    if t.dtype != torch.int64 or t.numel() == 0:
        return t.dtype
    low, high = (int(v) for v in torch.aminmax(t))  # one pass
    for dtype in _NARROW_INTEGERS:
        info = torch.iinfo(dtype)
        if info.min <= low and high <= info.max:
            return dtype
    return t.dtype


# --------------------------------------------------------------------------------------------------
# Batch construction (numpy, runs in DataLoader workers)
# --------------------------------------------------------------------------------------------------


def _field(obj: Any, name: str) -> np.ndarray:
    return np.asarray(getattr(obj, name)).astype(np.int64, copy=False)


_SMALL_TABLE = 1 << 16  # below this many values the default table fits the cache anyway


def _first_seen_codes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(codes, distinct)``: each value's index among the distinct values, numbered by first appearance.

    The hash table is sized for half the values, not all of them (pandas' default): a batch's values
    repeat (hop-2 rows ~3.7x on the default data), and a table sized for all of them outgrows the CPU
    cache: the 934k keys of a batch of 8,192 samples, 23.1 -> 17.3 ms (``benchmarks/bench_collate.py``).
    """
    hint = len(values) // 2 if len(values) > _SMALL_TABLE else None
    codes, distinct = pd.factorize(values, size_hint=hint)
    return codes.astype(np.int64, copy=False), np.asarray(distinct, dtype=np.int64)


def _factorize(values: np.ndarray, upper: int) -> tuple[np.ndarray, np.ndarray]:
    """``(distinct values, index of each value into them)`` for non-negative ints ``< upper``.

    A presence table when ``upper`` is small relative to ``len(values)`` (no sort), else hashing.
    """
    if upper <= 4 * len(values):
        present = np.zeros(upper, dtype=bool)
        present[values] = True
        distinct = np.flatnonzero(present)
        lookup = np.cumsum(present, dtype=np.int64) - 1
        return distinct, lookup[values]
    codes, distinct = _first_seen_codes(values)
    return distinct, codes


def make_batch(
    graph: Any,
    subgraph: Any,
    cut_ts: np.ndarray,
    num_layers: int,
    *,
    context_window: tuple[int, int] = (2, 2),
    target: np.ndarray | None = None,
    target_type: np.ndarray | None = None,
    history_length: int | None = None,
    neighbour_items: int = 0,
) -> DGSRBatch:
    """Turn a sampler :class:`~gnn_recsys.graph.sampler.SubgraphBatch` into model tensors.

    ``neighbour_items = M > 0`` also lists, per sample, up to ``M`` new items of the hop-2 context
    windows (what neighbour sessions did around the session's items), for the co-visitation bonus.

    Uses hops ``1..num_layers`` (``subgraph.hops[h-1]`` is hop ``h``). Session hops take their context
    windows from ``Hop.context`` (the sampler's ``context_window``); when the sampler ran without one
    they are computed here with ``context_window``. Leaf-hop nodes are de-duplicated into rows.
    """
    cut_ts = np.asarray(cut_ts, dtype=np.int64)
    num_samples = len(cut_ts)
    hops = list(subgraph.hops)
    if len(hops) < num_layers:
        raise ValueError(
            f"model has {num_layers} layers but the subgraph has only {len(hops)} hops beyond hop 0"
        )
    ev_type = gatherable(graph.ev_type)
    ev_item = gatherable(graph.ev_item)
    num_items = len(graph.item_aid)
    blocks: list[HopBlock] = []
    neighbours: tuple[np.ndarray, ...] | None = None
    num_parents = num_samples
    last_item = np.full(num_samples, -1, dtype=np.int64)
    prefix_count = np.zeros(num_samples, dtype=np.int64)
    for h, hop in enumerate(hops[:num_layers], start=1):
        node, parent, order, event = (_field(hop, f) for f in ("node", "parent", "order", "event"))
        leaf = h == num_layers
        if h == 1:
            first = order == 0
            last_item[parent[first]] = node[first]
            prefix_count = np.bincount(parent, minlength=num_samples).astype(np.int64)
            if history_length is None:  # the repeat bonus sees the hop-1 items
                history = _history(parent, node, num_samples, num_items)
                history_order, history_type = order, ev_type[event]
            else:  # ... or the session's last ``history_length`` events before the cut
                hist_parent, hist_event, history_order = _prefix_events(
                    graph, subgraph, parent[first], event[first], history_length
                )
                history = _history(hist_parent, ev_item[hist_event], num_samples, num_items)
                history_type = ev_type[hist_event]
        if h == 1:
            hop1_parent, hop1_order = parent, order
        ctx = None
        if h % 2 == 0:
            ctx = getattr(hop, "context", None)
            if ctx is None:
                ctx = context_events(graph, subgraph, h, *context_window)
            ctx = np.asarray(ctx, dtype=np.int64)
        if h == 2 and neighbour_items > 0:
            neighbours = _neighbour_items(
                ctx, hop1_parent[parent], hop1_order[parent], ev_item, history[0], num_items, neighbour_items
            )
        if not leaf:
            source, row_node, row_ctx = np.arange(len(node), dtype=np.int64), node, ctx
        elif ctx is None:  # item leaf: one row per distinct item
            row_node, source = _factorize(node, num_items)
            row_ctx = None
        else:  # session leaf: one row per (edge event, how many later events the cut admits)
            after = (
                (ctx[:, context_window[0] :] >= 0).sum(1) if ctx.shape[1] else np.zeros(len(node), np.int64)
            )
            key = event * (ctx.shape[1] + 1) + after
            source, _ = _first_seen_codes(key)
            seen_before = np.maximum.accumulate(np.concatenate([[-1], source[:-1]]))
            first_row = np.flatnonzero(source > seen_before)
            row_node, row_ctx = node[first_row], ctx[first_row]
        block = HopBlock(
            node=torch.from_numpy(node),
            layout=ChildLayout.from_edges(
                parent, order, ev_type[event], num_parents, source=source, num_rows=len(row_node)
            ),
            row_node=torch.from_numpy(np.ascontiguousarray(row_node)),
        )
        if row_ctx is not None:
            valid = row_ctx >= 0
            vocab, local = _factorize(ev_item[row_ctx[valid]].astype(np.int64), num_items)
            dense = np.full(row_ctx.shape, len(vocab), dtype=np.int64)
            dense[valid] = local
            block.context = torch.from_numpy(dense)
            block.context_items = torch.from_numpy(vocab)
        blocks.append(block)
        num_parents = len(node)
    return DGSRBatch(
        hops=blocks,
        num_samples=num_samples,
        last_item=torch.from_numpy(last_item),
        prefix_count=torch.from_numpy(prefix_count),
        target=None if target is None else torch.from_numpy(np.asarray(target, dtype=np.int64)),
        target_type=None
        if target_type is None
        else torch.from_numpy(np.asarray(target_type, dtype=np.int64)),
        history_item=torch.from_numpy(history[0]),
        history_slot=torch.from_numpy(history[1]),
        history_order=torch.from_numpy(np.ascontiguousarray(history_order, dtype=np.int64)),
        history_type=torch.from_numpy(np.ascontiguousarray(history_type, dtype=np.int64)),
        **(
            {}
            if neighbours is None
            else {
                f"neighbour_{name}": torch.from_numpy(np.ascontiguousarray(array, dtype=np.int64))
                for name, array in zip(("item", "slot", "order", "side"), neighbours, strict=True)
            }
        ),
    )


def _neighbour_items(  # noqa: PLR0917
    ctx: np.ndarray,
    edge_sample: np.ndarray,
    edge_order: np.ndarray,
    ev_item: Any,
    history_item: np.ndarray,
    num_items: int,
    limit: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(items [B, M], slot, order, side)`` of the new items in the hop-2 context windows ``ctx``.

    ``ctx [N2, C]`` are the events around each neighbour session's event on a session item (-1 where
    none before the cut); ``edge_sample``/``edge_order``: each hop-2 edge's sample and the recency of
    the session item it hangs below. Items of the sample's own history are left out (the repeat bonus
    scores them); per sample the ``limit`` items with the largest ``sum 1 / (1 + order)`` are kept.
    One occurrence per (edge, column): ``slot`` into the flat ``[B * M]`` layout, ``order``, ``side``.
    """
    num_samples = len(history_item)
    rows, side = np.nonzero(ctx >= 0)
    sample = edge_sample[rows]
    order = edge_order[rows]
    key = sample * num_items + ev_item[ctx[rows, side]].astype(np.int64)
    own = np.nonzero(history_item >= 0)
    own_keys = np.sort(own[0].astype(np.int64) * num_items + history_item[own])
    if len(own_keys):
        found = np.minimum(np.searchsorted(own_keys, key), len(own_keys) - 1)
        new = own_keys[found] != key
        key, order, side = key[new], order[new], side[new]
    distinct, occurrence = np.unique(key, return_inverse=True)  # sorted by sample, then item
    weight = np.bincount(occurrence, weights=1.0 / (1.0 + order), minlength=len(distinct))
    distinct_sample = distinct // num_items
    ranked = np.lexsort((-weight, distinct_sample))  # per sample, heaviest first
    start = np.searchsorted(distinct_sample[ranked], distinct_sample[ranked], side="left")
    rank = np.empty(len(distinct), dtype=np.int64)
    rank[ranked] = np.arange(len(distinct)) - start
    kept = rank < limit
    width = int(min(limit, rank.max() + 1)) if len(rank) else 0
    items = np.full((num_samples, width), -1, dtype=np.int64)
    items[distinct_sample[kept], rank[kept]] = distinct[kept] % num_items
    slot_of_distinct = distinct_sample * width + rank
    occurrence_kept = kept[occurrence]
    return (
        items,
        slot_of_distinct[occurrence[occurrence_kept]],
        order[occurrence_kept],
        side[occurrence_kept],
    )


def _prefix_events(
    graph: Any, subgraph: Any, sample: np.ndarray, last_event: np.ndarray, length: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(sample, event, order)`` of each sample's last ``length`` events up to ``last_event``.

    The prefix of a sample is contiguous in the session-order arrays and ends at its most recent hop-1
    edge, so no search is needed: a ragged ``arange`` back from ``last_event``.
    """
    session = np.asarray(subgraph.session, dtype=np.int64)[sample]
    start = np.maximum(gatherable(graph.session_ptr)[session], last_event + 1 - length)
    counts = last_event + 1 - start
    total = int(counts.sum())
    owner = np.repeat(np.arange(len(sample)), counts)
    offset = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    event = start[owner] + offset
    return sample[owner], event, last_event[owner] - event


def _history(
    parent: np.ndarray, item: np.ndarray, num_samples: int, num_items: int
) -> tuple[np.ndarray, np.ndarray]:
    """Distinct prefix items per sample, padded to ``[B, H]`` (-1), and each edge's flat slot in it."""
    key = parent.astype(np.int64) * num_items + item
    distinct, slot_of_edge = np.unique(key, return_inverse=True)  # sorted by sample, then item
    sample, distinct_item = np.divmod(distinct, num_items)
    counts = np.bincount(sample, minlength=num_samples)
    width = int(counts.max()) if len(distinct) else 0
    position = np.arange(len(distinct)) - (np.cumsum(counts) - counts)[sample]
    items = np.full((num_samples, width), -1, dtype=np.int64)
    items[sample, position] = distinct_item
    flat = (sample * width + position).astype(np.int64)
    return items, flat[slot_of_edge.reshape(-1)]


__all__ = ["NUM_EVENT_TYPES", "DGSRBatch", "HopBlock", "make_batch"]
