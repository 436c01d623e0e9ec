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
    The leaf hop (hop ``L``) is only ever *read* through ``W_1`` (and ``W_3`` for each parent's last
    child), and the initial session state is linear in the item embeddings. So for a session leaf hop
    the messages are ``mean_j (W_1 E)[ctx_j] + W_1 b`` with ``W_1 E`` computed once per distinct
    context item of the batch (an ``embedding_bag`` over that small table), never per node.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gnn_recsys.graph.sampler import context_events
from gnn_recsys.models.conv.dgrn_conv import Attention, ChildLayout, DGRNConv

NUM_EVENT_TYPES = 3


@dataclass
class HopBlock:
    """Tensors of one hop ``h >= 1`` of a batch: its nodes, how they hang below hop ``h-1``, context."""

    node: Tensor  # [N_h] int64: item index (odd h) or session index (even h)
    layout: ChildLayout  # children = this hop, parents = hop h-1
    context: Tensor | None = None  # [N_h, C] int64 into context_items, pad = len(context_items); even h
    context_items: Tensor | None = None  # [U] int64 distinct item indices of the hop's context windows

    def to(self, device: torch.device | str, non_blocking: bool = False) -> HopBlock:
        def move(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(device, non_blocking=non_blocking)

        return HopBlock(
            node=self.node.to(device, non_blocking=non_blocking),
            layout=self.layout.to(device, non_blocking=non_blocking),
            context=move(self.context),
            context_items=move(self.context_items),
        )

    def pin_memory(self) -> HopBlock:
        def pin(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.pin_memory()

        return HopBlock(
            self.node.pin_memory(), self.layout.pin_memory(), pin(self.context), pin(self.context_items)
        )


@dataclass
class DGSRBatch:
    """Model input for ``num_samples`` samples: hops ``1..L`` plus readout helpers and (optional) targets."""

    hops: list[HopBlock]
    num_samples: int
    last_item: Tensor  # [B] int64 item index of the most recent prefix item, -1 = empty prefix
    prefix_count: Tensor  # [B] number of hop-1 items
    target: Tensor | None = None  # [B] int64 item index

    def to(self, device: torch.device | str, non_blocking: bool = False) -> DGSRBatch:
        return DGSRBatch(
            hops=[hop.to(device, non_blocking) for hop in self.hops],
            num_samples=self.num_samples,
            last_item=self.last_item.to(device, non_blocking=non_blocking),
            prefix_count=self.prefix_count.to(device, non_blocking=non_blocking),
            target=None if self.target is None else self.target.to(device, non_blocking=non_blocking),
        )

    def pin_memory(self) -> DGSRBatch:
        return DGSRBatch(
            hops=[hop.pin_memory() for hop in self.hops],
            num_samples=self.num_samples,
            last_item=self.last_item.pin_memory(),
            prefix_count=self.prefix_count.pin_memory(),
            target=None if self.target is None else self.target.pin_memory(),
        )


# --------------------------------------------------------------------------------------------------
# Batch construction (numpy, runs in DataLoader workers)
# --------------------------------------------------------------------------------------------------


def _field(obj: Any, name: str) -> np.ndarray:
    return np.asarray(getattr(obj, name))


def _layout(parent: np.ndarray, order: np.ndarray, edge_type: np.ndarray, num_parents: int) -> ChildLayout:
    return ChildLayout.from_edges(
        torch.from_numpy(parent.astype(np.int64, copy=False)),
        torch.from_numpy(order.astype(np.int64, copy=False)),
        torch.from_numpy(edge_type.astype(np.int64, copy=False)),
        num_parents,
    )


def make_batch(
    graph: Any,
    subgraph: Any,
    cut_ts: np.ndarray,
    num_layers: int,
    *,
    context_window: tuple[int, int] = (2, 2),
    target: np.ndarray | None = None,
) -> DGSRBatch:
    """Turn a sampler :class:`~gnn_recsys.graph.sampler.SubgraphBatch` into model tensors.

    Uses hops ``1..num_layers`` (``subgraph.hops[h-1]`` is hop ``h``). Session hops take their context
    windows from ``Hop.context`` (the sampler's ``context_window``); when the sampler ran without one
    they are computed here with ``context_window``.
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
    blocks: list[HopBlock] = []
    num_parents = num_samples
    last_item = np.full(num_samples, -1, dtype=np.int64)
    prefix_count = np.zeros(num_samples, dtype=np.int64)
    for h, hop in enumerate(hops[:num_layers], start=1):
        node = _field(hop, "node").astype(np.int64, copy=False)
        parent = _field(hop, "parent").astype(np.int64, copy=False)
        order = _field(hop, "order").astype(np.int64, copy=False)
        event = _field(hop, "event").astype(np.int64, copy=False)
        block = HopBlock(
            node=torch.from_numpy(node), layout=_layout(parent, order, ev_type[event], num_parents)
        )
        if h == 1:
            first = order == 0
            last_item[parent[first]] = node[first]
            prefix_count = np.bincount(parent, minlength=num_samples).astype(np.int64)
        if h % 2 == 0:
            ctx = getattr(hop, "context", None)
            if ctx is None:
                ctx = context_events(graph, subgraph, h, *context_window)
            ctx = np.asarray(ctx, dtype=np.int64)
            valid = ctx >= 0
            vocab, local = np.unique(ev_item[ctx[valid]], return_inverse=True)
            dense = np.full(ctx.shape, len(vocab), dtype=np.int64)
            dense[valid] = local
            block.context = torch.from_numpy(dense)
            block.context_items = torch.from_numpy(vocab.astype(np.int64))
        blocks.append(block)
        num_parents = len(node)
    return DGSRBatch(
        hops=blocks,
        num_samples=num_samples,
        last_item=torch.from_numpy(last_item),
        prefix_count=torch.from_numpy(prefix_count),
        target=None if target is None else torch.from_numpy(np.asarray(target, dtype=np.int64)),
    )


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
        self.item_embedding = nn.Embedding(num_items, embedding_dim)
        self.session_bias = nn.Parameter(torch.zeros(embedding_dim))
        # Layer l updates hops 0..L-l, so item nodes (hop 1) are updated only while l <= L-1: the last
        # layer has no item<-sessions conv (it would never be used, nor trained).
        convs = {}
        for layer in range(1, num_layers + 1):
            kinds = [("session", item_max_length)] + ([("item", user_max_length)] if layer < num_layers else [])
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
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.item_embedding.weight, std=0.1)
        nn.init.normal_(self.session_bias, std=0.1)
        for conv in self.convs.values():
            conv.reset_parameters()  # type: ignore[operator]
        nn.init.xavier_uniform_(self.readout.weight)
        nn.init.zeros_(self.readout.bias)

    def conv(self, layer: int, parent_hop: int) -> DGRNConv:
        """The conv of layer ``layer`` (1-based) whose parents sit at hop ``parent_hop``."""
        return self.convs[f"{'item' if parent_hop % 2 else 'session'}{layer}"]  # type: ignore[return-value]

    # -- initial states ------------------------------------------------------------------------------

    def _center_state(self, batch: DGSRBatch) -> Tensor:
        hop1 = batch.hops[0]
        emb = self.item_embedding(hop1.node)
        total = emb.new_zeros(batch.num_samples, self.dim).index_add_(0, hop1.layout.index, emb)
        count = batch.prefix_count.to(total.dtype).unsqueeze(-1)
        return torch.where(count > 0, total / count.clamp(min=1), self.session_bias.to(total.dtype))

    def _context_table(self, block: HopBlock) -> Tensor:
        """``E`` of the block's distinct context items plus a zero padding row: ``[U + 1, d]``."""
        assert block.context_items is not None
        emb = self.item_embedding(block.context_items)
        return torch.cat([emb, emb.new_zeros(1, self.dim)])

    def _session_state(self, block: HopBlock, table: Tensor, rows: Tensor | None = None) -> Tensor:
        """Neighbour-session initial state ``mean(E[context]) + b`` for (a subset ``rows`` of) a hop."""
        assert block.context is not None
        ctx = block.context if rows is None else block.context[rows.clamp(min=0)]
        pad = table.shape[0] - 1
        if ctx.shape[1] == 0:
            return self.session_bias.expand(ctx.shape[0], -1)
        return F.embedding_bag(ctx, table, mode="mean", padding_idx=pad) + self.session_bias

    def _initial_state(self, block: HopBlock, hop: int) -> Tensor:
        if hop % 2 == 1:
            return self.item_embedding(block.node)
        return self._session_state(block, self._context_table(block))

    def _leaf_messages(self, conv: DGRNConv, block: HopBlock, hop: int) -> tuple[Tensor, Tensor]:
        """``W_1 h_j`` for every leaf node and the parents' last-child states, without per-node matmuls."""
        last = block.layout.last
        if hop % 2 == 1:
            emb = self.item_embedding(block.node)
            return conv.lin_child(emb), _gather_or_zero(emb, last)
        assert block.context is not None
        table = self._context_table(block)
        pad = table.shape[0] - 1
        if block.context.shape[1] == 0:
            message = conv.lin_child(self.session_bias).expand(block.node.shape[0], -1)
        else:
            message = F.embedding_bag(block.context, conv.lin_child(table), mode="mean", padding_idx=pad)
            message = message + conv.lin_child(self.session_bias)
        x_last = self._session_state(block, table, last) * (last >= 0).unsqueeze(-1)
        return message, x_last

    # -- forward ------------------------------------------------------------------------------------

    def forward(self, batch: DGSRBatch) -> Tensor:
        """Session representations ``[B, d]`` (score them with :meth:`score_all` or the loss)."""
        num_layers = self.num_layers
        hops = batch.hops
        if len(hops) < num_layers:
            raise ValueError(f"batch has {len(hops)} hops, model needs {num_layers}")
        states = [self._center_state(batch)]
        states += [self._initial_state(hops[h - 1], h) for h in range(1, num_layers)]
        center = [states[0]]
        for layer in range(1, num_layers + 1):
            updated = []
            for hop in range(num_layers - layer + 1):
                conv = self.conv(layer, hop)
                block = hops[hop]  # children = hop + 1
                if hop + 1 < len(states):
                    updated.append(conv(states[hop], states[hop + 1], block.layout))
                else:
                    message, x_last = self._leaf_messages(conv, block, hop + 1)
                    updated.append(conv.aggregate(states[hop], message, x_last, block.layout))
            states = updated
            center.append(states[0])
        if self.readout_last_item:
            last = batch.last_item
            center.append(self.item_embedding(last.clamp(min=0)) * (last >= 0).unsqueeze(-1))
        dtype = center[-1].dtype
        return self.readout(torch.cat([c.to(dtype) for c in center], dim=-1))

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
        }


def _gather_or_zero(x: Tensor, index: Tensor) -> Tensor:
    if x.shape[0] == 0:
        return x.new_zeros(index.shape[0], x.shape[1])
    return x[index.clamp(min=0)] * (index >= 0).unsqueeze(-1).to(x.dtype)


__all__ = ["DGSR", "DGSRBatch", "HopBlock", "make_batch"]
