r"""One direction of a DGRN layer (Dynamic Graph Recommendation Network, DGSR, Zhang et al. TKDE 2022).

A DGRN layer updates every node of the dynamic session-item graph from its time-ordered neighbours.
It has two directions with separate weights -- sessions aggregate their items, items aggregate their
sessions -- and this module is *one* of them. Parents ``p`` aggregate their children ``j`` (the
neighbours along the edges before the sample's cut time); ``r_j`` is the relative order of the edge
among the parent's children (0 = most recent, capped at ``max_order - 1``) and ``\tau_j`` the event
type of the edge (click / cart / order).

Long-term attention (all children, relative-order and edge-type aware keys and values)::

    e_j      = (W_2 h_p)^T (W_1 h_j + p^K_{r_j} + t^K_{\tau_j}) / sqrt(d)
    alpha    = softmax_j(e_j)                                     # over the children of p
    h^long_p = sum_j alpha_j (W_1 h_j + p^V_{r_j} + t^V_{\tau_j})

Short-term attention (query = the most recent child ``last``, order 0)::

    e'_j      = (W_3 h_last)^T (W_1 h_j) / sqrt(d)
    h^short_p = sum_j softmax_j(e'_j) W_1 h_j

Update::

    h_p^{(l)} = tanh(W_4 [h^long_p || h^short_p || h_p^{(l-1)}])

The event-type embeddings ``t^K``/``t^V`` are *our addition*: OTTO edges carry a type, the paper's
graph does not. Dropout (rate ``dropout``) is applied to the child messages ``W_1 h_j`` and
(rate ``attn_dropout``) to both attention distributions, as feature / attention dropout in the paper.

Layout. Children of one parent are contiguous and ``order`` < width, so the children can be scattered
into a padded block ``[N_parent, F, d]`` at slot ``parent * F + order`` (``to_dense_batch`` without a
sort). All attention then runs as two batched matmuls, and the order and type terms become small
matmuls against the embedding tables instead of per-child additions:
``q^T p^K_r`` is ``q @ (p^K)^T`` gathered at ``r``, and ``sum_j alpha_j p^V_{r_j}`` is ``alpha @ p^V``.
``attention="segment"`` computes the same thing per edge with :func:`torch_geometric.utils.softmax`
and scatter sums (kept to compare speed, see ``benchmarks/bench_training.py``).

Shapes: ``x_parent [N_p, d]``, ``x_child [N_c, d]``, ``index``/``order``/``edge_type`` ``[N_c]``,
output ``[N_p, d]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Literal

import torch
from torch import Tensor, nn
from torch_geometric.utils import scatter, softmax

Attention = Literal["dense", "segment"]


@dataclass
class ChildLayout:
    """Where each child of one (parent <- children) relation sits, precomputed once per batch.

    ``slot = index * width + order`` addresses the padded block ``[num_parents, width]``; ``mask`` and
    ``type_dense`` are that block's validity and edge types; ``last`` is, per parent, the position of
    its order-0 child (-1 when it has none). Built on CPU in the data-loading workers so the model does
    no host synchronisation.
    """

    index: Tensor  # [N_c] int64, parent of each child
    order: Tensor  # [N_c] int64, 0 = most recent edge
    edge_type: Tensor  # [N_c] int64
    slot: Tensor  # [N_c] int64
    mask: Tensor  # [N_p, F] bool
    type_dense: Tensor  # [N_p, F] int64 (0 where padded)
    last: Tensor  # [N_p] int64, -1 = no child
    num_parents: int
    width: int

    @classmethod
    def from_edges(cls, index: Tensor, order: Tensor, edge_type: Tensor, num_parents: int) -> ChildLayout:
        """Layout of children given as (parent, order, type); raises if two children share a slot."""
        index = index.long()
        order = order.long()
        edge_type = edge_type.long()
        n = int(index.numel())
        width = int(order.max()) + 1 if n else 1
        if n and (int(order.min()) < 0 or int(index.min()) < 0 or int(index.max()) >= num_parents):
            raise ValueError("ChildLayout: order must be >= 0 and index in [0, num_parents)")
        slot = index * width + order
        mask = torch.zeros(num_parents * width, dtype=torch.bool)
        mask[slot] = True
        if int(mask.sum()) != n:
            raise ValueError("ChildLayout: two children of one parent have the same order")
        type_dense = torch.zeros(num_parents * width, dtype=torch.long)
        type_dense[slot] = edge_type
        last = torch.full((num_parents,), -1, dtype=torch.long)
        first = order == 0
        last[index[first]] = torch.nonzero(first).flatten()
        return cls(
            index=index,
            order=order,
            edge_type=edge_type,
            slot=slot,
            mask=mask.view(num_parents, width),
            type_dense=type_dense.view(num_parents, width),
            last=last,
            num_parents=num_parents,
            width=width,
        )

    def to(self, device: torch.device | str, non_blocking: bool = False) -> ChildLayout:
        """The same layout with its tensors on ``device``."""
        moved = {
            f.name: (v.to(device, non_blocking=non_blocking) if isinstance(v, Tensor) else v)
            for f in fields(self)
            for v in [getattr(self, f.name)]
        }
        return ChildLayout(**moved)

    def pin_memory(self) -> ChildLayout:
        """Page-locked copies, for asynchronous host-to-GPU transfer."""
        return ChildLayout(
            **{
                f.name: (v.pin_memory() if isinstance(v, Tensor) else v)
                for f in fields(self)
                for v in [getattr(self, f.name)]
            }
        )


class DGRNConv(nn.Module):
    """Parents attend over their time-ordered children (long- and short-term) and update their state.

    Args:
        dim: state size ``d`` (parents and children share it).
        max_order: size of the relative-order tables ``p^K``/``p^V``; larger orders use the last row.
        num_edge_types: size of the edge-type tables ``t^K``/``t^V`` (3 OTTO event types).
        dropout: dropout on the child messages ``W_1 h_j``.
        attn_dropout: dropout on the attention weights.
        attention: ``"dense"`` (padded blocks, batched matmuls) or ``"segment"`` (per-edge softmax).
    """

    def __init__(
        self,
        dim: int,
        max_order: int,
        num_edge_types: int = 3,
        *,
        dropout: float = 0.0,
        attn_dropout: float = 0.0,
        attention: Attention = "dense",
    ) -> None:
        super().__init__()
        if attention not in ("dense", "segment"):
            raise ValueError(f"attention must be 'dense' or 'segment', got {attention!r}")
        self.dim = dim
        self.max_order = max_order
        self.attention = attention
        self.lin_child = nn.Linear(dim, dim, bias=False)  # W_1
        self.lin_query_long = nn.Linear(dim, dim, bias=False)  # W_2
        self.lin_query_short = nn.Linear(dim, dim, bias=False)  # W_3
        self.lin_update = nn.Linear(3 * dim, dim, bias=False)  # W_4
        self.order_key = nn.Embedding(max_order, dim)  # p^K
        self.order_value = nn.Embedding(max_order, dim)  # p^V
        self.type_key = nn.Embedding(num_edge_types, dim)  # t^K
        self.type_value = nn.Embedding(num_edge_types, dim)  # t^V
        self.msg_dropout = nn.Dropout(dropout)
        self.attn_dropout = nn.Dropout(attn_dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for lin in (self.lin_child, self.lin_query_long, self.lin_query_short, self.lin_update):
            nn.init.xavier_uniform_(lin.weight)
        for emb in (self.order_key, self.order_value, self.type_key, self.type_value):
            nn.init.normal_(emb.weight, std=0.1)

    def forward(self, x_parent: Tensor, x_child: Tensor, layout: ChildLayout) -> Tensor:
        """New parent states ``[N_p, d]`` from parent states ``[N_p, d]`` and child states ``[N_c, d]``."""
        message = self.lin_child(x_child)
        x_last = _gather_or_zero(x_child, layout.last)
        return self.aggregate(x_parent, message, x_last, layout)

    def aggregate(self, x_parent: Tensor, message: Tensor, x_last: Tensor, layout: ChildLayout) -> Tensor:
        """The layer from precomputed child messages ``W_1 h_j`` ``[N_c, d]`` and last-child states ``[N_p, d]``.

        Lets a caller compute ``W_1`` on unique states (e.g. on each distinct item once) and gather.
        """
        message = self.msg_dropout(message)
        query_long = self.lin_query_long(x_parent)
        query_short = self.lin_query_short(x_last)
        if self.attention == "dense":
            h_long, h_short = self._dense(query_long, query_short, message, layout)
        else:
            h_long, h_short = self._segment(query_long, query_short, message, layout)
        return torch.tanh(self.lin_update(torch.cat([h_long, h_short, x_parent.to(h_long.dtype)], dim=-1)))

    def _order_rows(self, width: int, device: torch.device) -> Tensor:
        return torch.arange(width, device=device).clamp_(max=self.max_order - 1)

    def _dense(
        self, query_long: Tensor, query_short: Tensor, message: Tensor, layout: ChildLayout
    ) -> tuple[Tensor, Tensor]:
        n_parent, width, d = layout.num_parents, layout.width, self.dim
        scale = 1.0 / math.sqrt(d)
        dtype = message.dtype
        block = (
            message.new_zeros(n_parent * width, d)
            .index_copy(0, layout.slot, message)
            .view(n_parent, width, d)
        )
        queries = torch.stack([query_long.to(dtype), query_short.to(dtype)], dim=2)  # [N_p, d, 2]
        scores = torch.bmm(block, queries)  # [N_p, F, 2]
        order_rows = self._order_rows(width, message.device)
        order_key = self.order_key.weight[order_rows].to(dtype)  # [F, d]
        type_key = self.type_key.weight.to(dtype)  # [T, d]
        long_extra = query_long.to(dtype) @ order_key.T + torch.gather(
            query_long.to(dtype) @ type_key.T, 1, layout.type_dense
        )
        score_long = (scores[..., 0] + long_extra) * scale
        score_short = scores[..., 1] * scale
        alpha = _masked_softmax(torch.stack([score_long, score_short], dim=1), layout.mask[:, None, :])
        alpha = self.attn_dropout(alpha).to(dtype)  # [N_p, 2, F]
        pooled = torch.bmm(alpha, block)  # [N_p, 2, d]
        alpha_long = alpha[:, 0]
        type_weight = alpha_long.new_zeros(n_parent, self.type_value.num_embeddings).scatter_add_(
            1, layout.type_dense, alpha_long
        )
        h_long = (
            pooled[:, 0]
            + alpha_long @ self.order_value.weight[order_rows].to(dtype)
            + type_weight @ self.type_value.weight.to(dtype)
        )
        return h_long, pooled[:, 1]

    def _segment(
        self, query_long: Tensor, query_short: Tensor, message: Tensor, layout: ChildLayout
    ) -> tuple[Tensor, Tensor]:
        index, n_parent = layout.index, layout.num_parents
        scale = 1.0 / math.sqrt(self.dim)
        dtype = message.dtype
        order = layout.order.clamp(max=self.max_order - 1)
        key = message + self.order_key(order).to(dtype) + self.type_key(layout.edge_type).to(dtype)
        score_long = (key * query_long.to(dtype)[index]).sum(-1) * scale
        score_short = (message * query_short.to(dtype)[index]).sum(-1) * scale
        alpha = softmax(torch.stack([score_long, score_short], dim=1).float(), index, num_nodes=n_parent)
        alpha = self.attn_dropout(alpha).to(dtype)  # [N_c, 2]
        value = message + self.order_value(order).to(dtype) + self.type_value(layout.edge_type).to(dtype)
        h_long = scatter(alpha[:, :1] * value, index, dim=0, dim_size=n_parent, reduce="sum")
        h_short = scatter(alpha[:, 1:] * message, index, dim=0, dim_size=n_parent, reduce="sum")
        return h_long, h_short


def _gather_or_zero(x: Tensor, index: Tensor) -> Tensor:
    """``x[index]`` with zero rows where ``index == -1``."""
    if x.shape[0] == 0:
        return x.new_zeros(index.shape[0], x.shape[1])
    out = x[index.clamp(min=0)]
    return out * (index >= 0).unsqueeze(-1).to(out.dtype)


def _masked_softmax(scores: Tensor, mask: Tensor) -> Tensor:
    """Softmax over the last dim in float32; rows without any valid entry give all zeros (not NaN)."""
    scores = scores.float().masked_fill(~mask, torch.finfo(torch.float32).min)
    return torch.softmax(scores, dim=-1) * mask
