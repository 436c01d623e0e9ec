r"""DGSR: Dynamic Graph Neural Networks for Sequential Recommendation (Zhang et al., TKDE 2022).

A sample is a session at a cut time. Its temporal subgraph (``gnn_recsys.graph.sampler``) is a tree of
hops: hop 0 the session, hop 1 its last items before the cut, hop 2 those items' last sessions, ... .
``num_layers = L`` stacked DGRN layers (:class:`~gnn_recsys.models.conv.dgrn_conv.DGRNConv`, one
session<-items and one item<-sessions conv per layer, each with its own weights) run over that tree
like a computation tree without de-duplication: layer ``l`` updates the nodes of hops ``0..L-l`` from
their children at hop ``h+1`` (states of layer ``l-1``). Even hops are sessions, odd hops items.

Initial states (layer 0)
    * item node: its embedding ``E[item]``; ``E`` is also the output embedding (scores ``h E^T``);
    * center session (hop 0): mean of ``E`` over its hop-1 items (its observed prefix, at most
      ``item_max_length`` items);
    * neighbour session (hops 2, 4, ...): mean of ``E`` over its *context window* -- the items of the
      events just before and after the edge event in that session, restricted to ``ts < cut_ts`` --
      plus a learned bias ``b``; ``b`` alone when the window is empty (and for an empty center).

    **Deviation from the paper**, which learns one embedding per user: OTTO sessions are anonymous and
    the test sessions never occur in training, so a per-session embedding would be untrained noise at
    inference. The content-based initial state above is defined for any session at any cut time.

Readout
    ``z = W_r [h^0_c || h^1_c || ... || h^L_c || E[last item]]`` with ``W_r`` a linear map to ``d``;
    scores over the catalogue are ``z E^T``. Concatenating the last item's embedding (the paper's
    code does something alike; option ``readout_last_item``) gives the model a direct copy of the
    strongest signal of session recommendation, the most recent item, which the attention layers would
    otherwise have to preserve through the ``tanh`` updates.

Efficiency
    * The leaf hop (hop ``L``) is only ever *read* through ``W_1`` (and ``W_3`` for each parent's
      last child), and the initial session state is linear in the item embeddings. So a session leaf
      hop's messages are ``mean_j (W_1 E)[ctx_j] + W_1 b`` with ``W_1 E`` computed once per distinct
      context item of the batch (an ``embedding_bag`` over that small table), never per node.
    * Leaf nodes with the same key (an item; a session edge event with the same context window) are
      de-duplicated into shared rows before any tensor work: on the synthetic 1M-event benchmark a
      batch's 137k hop-2 nodes are 57k distinct rows.
    * All item embeddings of a batch are read in one gather, so autograd builds one dense
      ``[num_items, d]`` gradient per step (two with the loss) instead of one per use; for big
      catalogues on CPU ``sparse_embedding=True`` avoids even that.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gnn_recsys.graph.sampler import context_events
from gnn_recsys.models.conv.dgrn_conv import Attention, ChildLayout, DGRNConv

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

    def _map(self, fn: Any) -> HopBlock:
        def opt(t: Tensor | None) -> Tensor | None:
            return None if t is None else fn(t)

        return HopBlock(
            node=fn(self.node),
            layout=self.layout.to_fn(fn),
            row_node=fn(self.row_node),
            context=opt(self.context),
            context_items=opt(self.context_items),
        )

    def to(self, device: torch.device | str, non_blocking: bool = False) -> HopBlock:
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> HopBlock:
        return self._map(lambda t: t.pin_memory())


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

    def to(self, device: torch.device | str, non_blocking: bool = False) -> DGSRBatch:
        def move(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(device, non_blocking=non_blocking)

        return DGSRBatch(
            hops=[hop.to(device, non_blocking) for hop in self.hops],
            num_samples=self.num_samples,
            last_item=self.last_item.to(device, non_blocking=non_blocking),
            prefix_count=self.prefix_count.to(device, non_blocking=non_blocking),
            target=move(self.target),
            target_type=move(self.target_type),
            history_item=move(self.history_item),
            history_slot=move(self.history_slot),
            history_order=move(self.history_order),
            history_type=move(self.history_type),
        )

    def pin_memory(self) -> DGSRBatch:
        def pin(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.pin_memory()

        return DGSRBatch(
            hops=[hop.pin_memory() for hop in self.hops],
            num_samples=self.num_samples,
            last_item=self.last_item.pin_memory(),
            prefix_count=self.prefix_count.pin_memory(),
            target=pin(self.target),
            target_type=pin(self.target_type),
            history_item=pin(self.history_item),
            history_slot=pin(self.history_slot),
            history_order=pin(self.history_order),
            history_type=pin(self.history_type),
        )


# --------------------------------------------------------------------------------------------------
# Batch construction (numpy, runs in DataLoader workers)
# --------------------------------------------------------------------------------------------------


def _field(obj: Any, name: str) -> np.ndarray:
    return np.asarray(getattr(obj, name)).astype(np.int64, copy=False)


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
    codes, distinct = pd.factorize(values)
    return np.asarray(distinct, dtype=np.int64), codes.astype(np.int64, copy=False)


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
) -> DGSRBatch:
    """Turn a sampler :class:`~gnn_recsys.graph.sampler.SubgraphBatch` into model tensors.

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
    ev_type = np.asarray(graph.ev_type)
    ev_item = np.asarray(graph.ev_item)
    num_items = len(graph.item_aid)
    blocks: list[HopBlock] = []
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
        ctx = None
        if h % 2 == 0:
            ctx = getattr(hop, "context", None)
            if ctx is None:
                ctx = context_events(graph, subgraph, h, *context_window)
            ctx = np.asarray(ctx, dtype=np.int64)
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
            codes, _ = pd.factorize(key)  # codes numbered in order of first appearance
            source = codes.astype(np.int64, copy=False)
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
    )


def _prefix_events(
    graph: Any, subgraph: Any, sample: np.ndarray, last_event: np.ndarray, length: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(sample, event, order)`` of each sample's last ``length`` events up to ``last_event``.

    The prefix of a sample is contiguous in the session-order arrays and ends at its most recent hop-1
    edge, so no search is needed: a ragged ``arange`` back from ``last_event``.
    """
    session = np.asarray(subgraph.session, dtype=np.int64)[sample]
    start = np.maximum(np.asarray(graph.session_ptr)[session], last_event + 1 - length)
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


# --------------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------------


class DGSR(nn.Module):
    """DGSR session encoder + dot-product scorer over the item catalogue (see module docstring).

    Args:
        num_items: catalogue size (item indices ``0..num_items-1``).
        embedding_dim: ``d``.
        num_layers: DGRN layers ``L`` (= the sampler's ``k_hop``).
        item_max_length: session<-items order-embedding size (a session's last items).
        user_max_length: item<-sessions order-embedding size (an item's last sessions).
        dropout: child-message dropout; ``attn_dropout``: attention dropout (defaults to ``dropout``).
        readout_last_item: concatenate the last prefix item's embedding in the readout.
        attention: ``"dense"`` padded blocks or ``"segment"`` per-edge softmax.
        sparse_embedding: sparse gradients for the item table (pair with ``SparseAdam``).
        context_window: (before, after) events that define a neighbour session's initial state; not
            used by the forward pass (the batch carries the windows) but part of the model's input
            definition, so stored with it for inference.
    """

    def __init__(
        self,
        num_items: int,
        embedding_dim: int = 64,
        num_layers: int = 2,
        *,
        item_max_length: int = 50,
        user_max_length: int = 20,
        dropout: float = 0.1,
        attn_dropout: float | None = None,
        readout_last_item: bool = True,
        attention: Attention = "dense",
        num_event_types: int = NUM_EVENT_TYPES,
        context_window: tuple[int, int] = (2, 2),
        sparse_embedding: bool = False,
        type_heads: bool = False,
        repeat_bonus: bool = False,
        history_length: int | None = None,
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError("num_layers must be >= 1")
        self.num_items = num_items
        self.dim = embedding_dim
        self.num_layers = num_layers
        self.readout_last_item = readout_last_item
        self.context_window = (int(context_window[0]), int(context_window[1]))
        attn_dropout = dropout if attn_dropout is None else attn_dropout
        self.item_embedding = nn.Embedding(num_items, embedding_dim, sparse=sparse_embedding)
        self.session_bias = nn.Parameter(torch.zeros(embedding_dim))
        # Layer l updates hops 0..L-l, so item nodes (hop 1) are updated only while l <= L-1: the last
        # layer has no item<-sessions conv (it would never be used, nor trained).
        convs = {}
        for layer in range(1, num_layers + 1):
            kinds = [("session", item_max_length)] + (
                [("item", user_max_length)] if layer < num_layers else []
            )
            for kind, max_order in kinds:
                convs[f"{kind}{layer}"] = DGRNConv(
                    embedding_dim,
                    max_order,
                    num_event_types,
                    dropout=dropout,
                    attn_dropout=attn_dropout,
                    attention=attention,
                )
        self.convs = nn.ModuleDict(convs)
        self.item_max_length = item_max_length
        self.user_max_length = user_max_length
        readout_in = (num_layers + 1 + int(readout_last_item)) * embedding_dim
        self.readout = nn.Linear(readout_in, embedding_dim)
        # One residual head per event type (click / cart / order): OTTO asks for three lists.
        self.type_head = nn.Linear(embedding_dim, num_event_types * embedding_dim) if type_heads else None
        # Learned repeat prior: a bonus for items of the session's own prefix, by how recent and of which
        # event type each occurrence was (per target type with type heads). A dot-product score cannot
        # rank a *set* of earlier items on top (orders are mostly items carted before); this can.
        self.history_length = history_length
        prior_orders = history_length or item_max_length
        self.repeat_prior = (
            nn.Parameter(torch.zeros(num_event_types if type_heads else 1, prior_orders, num_event_types))
            if repeat_bonus
            else None
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.item_embedding.weight, std=0.1)
        nn.init.normal_(self.session_bias, std=0.1)
        for conv in self.convs.values():
            conv.reset_parameters()  # type: ignore[operator]
        nn.init.xavier_uniform_(self.readout.weight)
        nn.init.zeros_(self.readout.bias)
        if self.type_head is not None:  # every head starts as the shared representation
            nn.init.zeros_(self.type_head.weight)
            nn.init.zeros_(self.type_head.bias)

    def conv(self, layer: int, parent_hop: int) -> DGRNConv:
        """The conv of layer ``layer`` (1-based) whose parents sit at hop ``parent_hop``."""
        return self.convs[f"{'item' if parent_hop % 2 else 'session'}{layer}"]  # type: ignore[return-value]

    # -- initial states ------------------------------------------------------------------------------

    def _item_lookups(self, batch: DGSRBatch) -> tuple[list[Tensor], Tensor]:
        """All item embeddings the batch reads, in *one* gather: per hop (odd: ``E[row_node]``, even:
        ``E[context_items]``) and the last items. One gather means one dense ``[num_items, d]``
        gradient buffer per step instead of one per use (each costs a full pass at catalogue size)."""
        index = [hop.row_node if h % 2 else hop.context_items for h, hop in enumerate(batch.hops, start=1)]
        index = [i for i in index if i is not None]  # type: ignore[misc]
        sizes = [int(i.shape[0]) for i in index] + [batch.num_samples]
        gathered = self.item_embedding(torch.cat([*index, batch.last_item.clamp(min=0)]))
        parts = list(torch.split(gathered, sizes))
        per_hop: list[Tensor] = []
        for h, hop in enumerate(batch.hops, start=1):
            per_hop.append(parts.pop(0) if (h % 2 or hop.context_items is not None) else gathered[:0])
        return per_hop, parts[0]

    def _center_state(self, batch: DGSRBatch, hop1_rows: Tensor) -> Tensor:
        layout = batch.hops[0].layout
        emb = hop1_rows.index_select(0, layout.source)
        total = emb.new_zeros(batch.num_samples, self.dim).index_add_(0, layout.index, emb)
        count = batch.prefix_count.to(total.dtype).unsqueeze(-1)
        return torch.where(count > 0, total / count.clamp(min=1), self.session_bias.to(total.dtype))

    def _session_state(self, block: HopBlock, table: Tensor, rows: Tensor | None = None) -> Tensor:
        """Neighbour-session initial state ``mean(E[context]) + b`` for (a subset ``rows`` of) a hop.

        ``table`` is ``E[context_items]`` plus a trailing zero (padding) row."""
        assert block.context is not None
        ctx = block.context if rows is None else block.context[rows.clamp(min=0)]
        pad = table.shape[0] - 1
        if ctx.shape[1] == 0:
            return self.session_bias.expand(ctx.shape[0], -1)
        return F.embedding_bag(ctx, table, mode="mean", padding_idx=pad) + self.session_bias

    def _initial_state(self, block: HopBlock, hop: int, emb: Tensor) -> Tensor:
        """Layer-0 states of an inner hop (one row per node there)."""
        if hop % 2 == 1:
            return emb
        return self._session_state(block, _with_pad_row(emb))

    def _leaf_messages(self, conv: DGRNConv, block: HopBlock, hop: int, emb: Tensor) -> tuple[Tensor, Tensor]:
        """``W_1 h`` for every leaf row and the parents' last-child states, without per-node matmuls."""
        last = block.layout.last
        if hop % 2 == 1:
            return conv.lin_child(emb), _gather_or_zero(emb, last)
        assert block.context is not None
        table = _with_pad_row(emb)
        pad = table.shape[0] - 1
        if block.context.shape[1] == 0:
            message = conv.lin_child(self.session_bias).expand(block.row_node.shape[0], -1)
        else:
            message = F.embedding_bag(block.context, conv.lin_child(table), mode="mean", padding_idx=pad)
            message = message + conv.lin_child(self.session_bias)
        x_last = self._session_state(block, table, last) * (last >= 0).unsqueeze(-1)
        return message, x_last

    # -- forward ------------------------------------------------------------------------------------

    def forward(self, batch: DGSRBatch) -> Tensor:
        """Session representations ``[B, d]`` (score them with :meth:`score_all` or the loss)."""
        num_layers = self.num_layers
        hops = batch.hops[:num_layers]
        if len(hops) < num_layers:
            raise ValueError(f"batch has {len(hops)} hops, model needs {num_layers}")
        batch = DGSRBatch(hops, batch.num_samples, batch.last_item, batch.prefix_count, batch.target)
        item_emb, last_emb = self._item_lookups(batch)
        states = [self._center_state(batch, item_emb[0])]
        states += [self._initial_state(hops[h - 1], h, item_emb[h - 1]) for h in range(1, num_layers)]
        center = [states[0]]
        for layer in range(1, num_layers + 1):
            updated = []
            for hop in range(num_layers - layer + 1):
                conv = self.conv(layer, hop)
                block = hops[hop]  # children = hop + 1
                if hop + 1 < len(states):
                    updated.append(conv(states[hop], states[hop + 1], block.layout))
                else:
                    message, x_last = self._leaf_messages(conv, block, hop + 1, item_emb[hop])
                    updated.append(conv.aggregate(states[hop], message, x_last, block.layout))
            states = updated
            center.append(states[0])
        if self.readout_last_item:
            center.append(last_emb * (batch.last_item >= 0).unsqueeze(-1))
        dtype = center[-1].dtype
        return self.readout(torch.cat([c.to(dtype) for c in center], dim=-1))

    def typed(self, session_repr: Tensor, event_type: Tensor | int) -> Tensor:
        """The representation for predicting the next event of ``event_type`` (per sample or one int).

        ``z_t = z + U_t z + c_t``: a residual head per type, so that orders (mostly items already carted
        in the session) and clicks (mostly new items) can rank differently. Without type heads this is
        ``z`` itself.
        """
        if self.type_head is None:
            return session_repr
        heads = self.type_head(session_repr).view(session_repr.shape[0], -1, self.dim)
        if isinstance(event_type, int):
            return session_repr + heads[:, event_type]
        rows = torch.arange(session_repr.shape[0], device=session_repr.device)
        return session_repr + heads[rows, event_type]

    def history_bonus(self, batch: DGSRBatch, event_type: Tensor | int | None = None) -> Tensor | None:
        """``[B, H]`` repeat bonus of the batch's ``history_item`` (None without ``repeat_bonus``).

        ``bonus(i) = log sum_j exp(beta[t, r_j, y_j])`` over the prefix occurrences ``j`` of item ``i``,
        ``r_j`` their relative order, ``y_j`` their event type and ``t`` the target type (head). With
        ``beta = 0`` (the initial value) it is ``log(count of i in the prefix)``.
        """
        if self.repeat_prior is None or batch.history_item is None:
            return None
        prior = self.repeat_prior
        num_samples, width = batch.history_item.shape
        order = batch.history_order.clamp(max=prior.shape[1] - 1)
        if prior.shape[0] == 1 or event_type is None:
            head = torch.zeros_like(order)
        elif isinstance(event_type, int):
            head = torch.full_like(order, event_type)
        else:
            head = event_type[torch.div(batch.history_slot, max(width, 1), rounding_mode="floor")]
        logit = prior[head, order, batch.history_type]
        total = logit.new_zeros(num_samples * width).index_add_(0, batch.history_slot, logit.exp())
        valid = batch.history_item >= 0
        return torch.where(valid, total.view(num_samples, width).clamp(min=1e-30).log(), 0.0)

    def score_all(self, session_repr: Tensor) -> Tensor:
        """Scores ``[B, num_items]`` of every catalogue item."""
        return session_repr @ self.item_embedding.weight.to(session_repr.dtype).T

    def hyperparameters(self) -> dict[str, Any]:
        """Constructor arguments, to rebuild the model from a state dict."""
        conv0 = self.conv(1, 0)
        return {
            "num_items": self.num_items,
            "embedding_dim": self.dim,
            "num_layers": self.num_layers,
            "item_max_length": self.item_max_length,
            "user_max_length": self.user_max_length,
            "dropout": conv0.msg_dropout.p,
            "attn_dropout": conv0.attn_dropout.p,
            "readout_last_item": self.readout_last_item,
            "attention": conv0.attention,
            "num_event_types": conv0.type_key.num_embeddings,
            "context_window": list(self.context_window),
            "sparse_embedding": self.item_embedding.sparse,
            "type_heads": self.type_head is not None,
            "repeat_bonus": self.repeat_prior is not None,
            "history_length": self.history_length,
        }


def _with_pad_row(emb: Tensor) -> Tensor:
    return torch.cat([emb, emb.new_zeros(1, emb.shape[1])])


def _gather_or_zero(x: Tensor, index: Tensor) -> Tensor:
    if x.shape[0] == 0:
        return x.new_zeros(index.shape[0], x.shape[1])
    return x[index.clamp(min=0)] * (index >= 0).unsqueeze(-1).to(x.dtype)


__all__ = ["DGSR", "DGSRBatch", "HopBlock", "make_batch"]
