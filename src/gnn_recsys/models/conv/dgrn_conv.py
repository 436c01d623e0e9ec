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

With ``own_short_query=False`` (the reference code's form) there is no ``W_3``: the query is the last
child's own message, ``e'_j = (W_1 h_last)^T (W_1 h_j) / sqrt(d)``.

Update::

    h_p^{(l)} = tanh(W_4 [h^long_p || h^short_p || h_p^{(l-1)}])

The event-type embeddings ``t^K``/``t^V`` are *our addition*: OTTO edges carry a type, the paper's
graph does not. Dropout (rate ``dropout``) is applied to the child messages ``W_1 h_j`` and
(rate ``attn_dropout``) to both attention distributions, as feature / attention dropout in the paper;
children that share a message row (see below) share its dropout mask.

Layout. Children of one parent are contiguous and ``order`` < width, so the children can be placed
into a padded block ``[N_parent, F, d]`` at slot ``parent * F + order`` (``to_dense_batch`` without
a sort), by one gather from the child-message rows -- so identical children may share a row. Both
attentions then run as batched matmuls (:class:`BlockAttention`, with a hand-written backward), and
the order and type terms become small matmuls against the embedding tables instead of per-child
additions: ``q^T p^K_r`` is ``q @ (p^K)^T`` read at ``r``, ``sum_j alpha_j p^V_{r_j}`` is
``alpha @ p^V``. ``attention="segment"`` computes the same per edge with
:func:`torch_geometric.utils.softmax` and scatter sums: the baseline the dense layout is measured
against in ``benchmarks/bench_training.py`` (dense is 1.6-2.7x faster there, CPU).

Shapes: ``x_parent [N_p, d]``, ``x_child [rows, d]`` (rows = ``N_c`` unless children share rows),
``index``/``order``/``edge_type``/``source`` ``[N_c]`` (in :class:`ChildLayout`), output ``[N_p, d]``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.utils import scatter, softmax

Attention = Literal["dense", "segment"]


@dataclass
class ChildLayout:
    """Where each child of one (parent <- children) relation sits, precomputed once per batch.

    Child states/messages live in a tensor of ``num_rows`` rows; ``source[j]`` is child ``j``'s row
    (``arange`` normally; several children may share a row when the caller de-duplicated identical
    children). ``slot_source`` is, for every slot ``parent * width + order`` of the padded block
    ``[num_parents, width]``, the row of the child there, or row 0 when empty: any finite row will do
    there, since an empty slot's attention weight is exactly zero (so is the gradient it sends back);
    ``mask`` and ``type_dense`` are the block's validity and edge types; ``last`` is, per parent, the
    row of its order-0 child (-1 when it has none). Built with NumPy in the data-loading workers, so
    the model does no host synchronisation.
    """

    index: Tensor  # [N_c] int64, parent of each child
    order: Tensor  # [N_c] int64, 0 = most recent edge
    edge_type: Tensor  # [N_c] int64
    source: Tensor  # [N_c] int64, row of each child's state
    slot_source: Tensor  # [N_p * F] int64, row per block slot (0 where empty, see mask)
    mask: Tensor  # [N_p, F] bool
    type_dense: Tensor  # [N_p, F] int64 (0 where padded)
    last: Tensor  # [N_p] int64 row of the order-0 child, -1 = no child
    num_parents: int
    width: int
    num_rows: int

    @classmethod
    def from_edges(
        cls,
        index: np.ndarray | Tensor,
        order: np.ndarray | Tensor,
        edge_type: np.ndarray | Tensor,
        num_parents: int,
        *,
        source: np.ndarray | Tensor | None = None,
        num_rows: int | None = None,
    ) -> ChildLayout:
        """Layout of children given as (parent, order, type[, row]); raises if two share a slot."""
        index = np.asarray(index, dtype=np.int64)
        order = np.asarray(order, dtype=np.int64)
        edge_type = np.asarray(edge_type, dtype=np.int64)
        n = len(index)
        if source is None:
            source = np.arange(n, dtype=np.int64)
            num_rows = n
        source = np.asarray(source, dtype=np.int64)
        if num_rows is None:
            num_rows = int(source.max()) + 1 if n else 0
        width = int(order.max()) + 1 if n else 1
        if n and (order.min() < 0 or index.min() < 0 or index.max() >= num_parents):
            raise ValueError("ChildLayout: order must be >= 0 and index in [0, num_parents)")
        slot = index * width + order
        mask = np.zeros(num_parents * width, dtype=bool)
        mask[slot] = True
        if int(np.count_nonzero(mask)) != n:
            raise ValueError("ChildLayout: two children of one parent have the same order")
        slot_source = np.zeros(num_parents * width, dtype=np.int64)  # empty slots read row 0
        slot_source[slot] = source
        type_dense = np.zeros(num_parents * width, dtype=np.int64)
        type_dense[slot] = edge_type
        last = np.full(num_parents, -1, dtype=np.int64)
        first = order == 0
        last[index[first]] = source[first]
        return cls(
            index=torch.from_numpy(index),
            order=torch.from_numpy(order),
            edge_type=torch.from_numpy(edge_type),
            source=torch.from_numpy(source),
            slot_source=torch.from_numpy(slot_source),
            mask=torch.from_numpy(mask.reshape(num_parents, width)),
            type_dense=torch.from_numpy(type_dense.reshape(num_parents, width)),
            last=torch.from_numpy(last),
            num_parents=num_parents,
            width=width,
            num_rows=num_rows,
        )

    def map(self, fn: Callable[[Tensor], Tensor]) -> ChildLayout:
        """The same layout with ``fn`` applied to every tensor (device moves, pinning)."""
        return ChildLayout(
            **{
                f.name: (fn(v) if isinstance(v, Tensor) else v)
                for f in fields(self)
                for v in [getattr(self, f.name)]
            }
        )

    def to(self, device: torch.device | str, non_blocking: bool = False) -> ChildLayout:
        """The same layout with its tensors on ``device``."""
        return self.map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> ChildLayout:
        """Page-locked copies, for asynchronous host-to-GPU transfer."""
        return self.map(lambda t: t.pin_memory())


class DGRNConv(nn.Module):
    """Parents attend over their time-ordered children (long- and short-term) and update their state.

    Args:
        dim: state size ``d`` (parents and children share it).
        max_order: size of the relative-order tables ``p^K``/``p^V``; larger orders use the last row.
        num_edge_types: size of the edge-type tables ``t^K``/``t^V`` (3 OTTO event types).
        dropout: dropout on the child messages ``W_1 h_j``.
        attn_dropout: dropout on the attention weights.
        attention: ``"dense"`` (padded blocks, batched matmuls) or ``"segment"`` (per-edge softmax).
        own_short_query: a separate short-term query matrix ``W_3``; False: the query is ``W_1 h_last``
            (as the reference code, one matrix fewer).
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
        own_short_query: bool = True,
    ) -> None:
        super().__init__()
        if attention not in ("dense", "segment"):
            raise ValueError(f"attention must be 'dense' or 'segment', got {attention!r}")
        self.dim = dim
        self.max_order = max_order
        self.attention = attention
        self.lin_child = nn.Linear(dim, dim, bias=False)  # W_1
        self.lin_query_long = nn.Linear(dim, dim, bias=False)  # W_2
        self.lin_query_short = nn.Linear(dim, dim, bias=False) if own_short_query else None  # W_3
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
            if lin is not None:
                nn.init.xavier_uniform_(lin.weight)
        for emb in (self.order_key, self.order_value, self.type_key, self.type_value):
            nn.init.normal_(emb.weight, std=0.1)

    def forward(self, x_parent: Tensor, x_child: Tensor, layout: ChildLayout) -> Tensor:
        """New parent states ``[N_p, d]`` from parent states ``[N_p, d]`` and child states ``[rows, d]``."""
        message = self.lin_child(x_child)
        x_last = _gather_or_zero(x_child, layout.last)
        return self.aggregate(x_parent, message, x_last, layout)

    def aggregate(self, x_parent: Tensor, message: Tensor, x_last: Tensor, layout: ChildLayout) -> Tensor:
        """The layer from precomputed child messages ``W_1 h`` ``[rows, d]`` and last-child states ``[N_p, d]``.

        Lets a caller compute ``W_1`` on unique states (e.g. on each distinct item once) and gather.
        """
        message = feature_dropout(message, self.msg_dropout.p, self.training)
        query_long = self.lin_query_long(x_parent)
        short = self.lin_child if self.lin_query_short is None else self.lin_query_short
        query_short = short(x_last)
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
        if message.shape[0] == 0:  # no child at all: empty slots need some row to read
            message = message.new_zeros(1, d)
        block = message.index_select(0, layout.slot_source).view(n_parent, width, d)
        queries = torch.stack([query_long.to(dtype), query_short.to(dtype)], dim=2)  # [N_p, d, 2]
        order_rows = self._order_rows(width, message.device)
        order_key = self.order_key.weight[order_rows].to(dtype)  # [F, d]
        type_key = self.type_key.weight.to(dtype)  # [T, d]
        long_extra = query_long.to(dtype) @ order_key.T + torch.gather(
            query_long.to(dtype) @ type_key.T, 1, layout.type_dense
        )
        keep = None
        if self.training and self.attn_dropout.p > 0:
            keep = dropout_mask((n_parent, 2, width), self.attn_dropout.p, message.device)
        long_extra = long_extra.to(torch.promote_types(dtype, torch.float32))
        pooled, alpha = BlockAttention.apply(block, queries, long_extra, layout.mask, keep, scale)
        alpha = alpha.to(dtype)  # [N_p, 2, F], after dropout
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
        message = message.index_select(0, layout.source)
        key = message + self.order_key(order).to(dtype) + self.type_key(layout.edge_type).to(dtype)
        score_long = (key * query_long.to(dtype)[index]).sum(-1) * scale
        score_short = (message * query_short.to(dtype)[index]).sum(-1) * scale
        alpha = softmax(torch.stack([score_long, score_short], dim=1).float(), index, num_nodes=n_parent)
        alpha = feature_dropout(alpha, self.attn_dropout.p, self.training).to(dtype)  # [N_c, 2]
        value = message + self.order_value(order).to(dtype) + self.type_value(layout.edge_type).to(dtype)
        h_long = scatter(alpha[:, :1] * value, index, dim=0, dim_size=n_parent, reduce="sum")
        h_short = scatter(alpha[:, 1:] * message, index, dim=0, dim_size=n_parent, reduce="sum")
        return h_long, h_short


class BlockAttention(torch.autograd.Function):
    """Long- and short-term attention over a padded child block, with a hand-written backward.

    Forward: ``S = block @ queries`` (``[N_p, F, 2]``); scores ``Z = scale (S^T + [long_extra; 0])``;
    ``alpha = masked softmax(Z)`` over F; ``alpha_d = alpha * keep`` (attention dropout);
    ``pooled = alpha_d @ block`` (``[N_p, 2, d]``). Returns ``(pooled, alpha_d)``.

    Why by hand: autograd's backward of the two ``bmm`` computes ``d block`` as two batched outer
    products with an inner size of 2 plus an add -- three passes over the largest tensor of the model,
    in a shape MKL handles badly. Here ``d block = [dS, alpha_d^T] @ [queries^T; d pooled]`` is one
    ``bmm`` with inner size 4 (measured 2.5x faster on CPU for a ``[9300, 20, 64]`` block).
    """

    @staticmethod
    def forward(  # type: ignore[override]  # noqa: PLR0917 - autograd.Function.apply is positional-only
        ctx: Any,
        block: Tensor,
        queries: Tensor,
        long_extra: Tensor,
        mask: Tensor,
        keep: Tensor | None,
        scale: float,
    ) -> tuple[Tensor, Tensor]:
        acc = torch.promote_types(block.dtype, torch.float32)  # softmax precision: at least float32
        scores = torch.bmm(block, queries).to(acc).transpose(1, 2).contiguous()  # [N_p, 2, F]
        scores[:, 0] += long_extra
        alpha = _masked_softmax(scores.mul_(scale), mask[:, None, :])
        dropped = alpha if keep is None else alpha * keep
        pooled = torch.bmm(dropped.to(block.dtype), block)
        ctx.save_for_backward(block, queries, alpha, keep)
        ctx.scale = scale
        return pooled, dropped

    @staticmethod
    def backward(ctx: Any, d_pooled: Tensor, d_dropped: Tensor | None) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        block, queries, alpha, keep = ctx.saved_tensors
        dtype = block.dtype
        d_pooled = d_pooled.to(dtype)
        grad = torch.bmm(d_pooled, block.transpose(1, 2)).to(alpha.dtype)  # d alpha_d, [N_p, 2, F]
        if d_dropped is not None:
            grad = grad + d_dropped
        dropped = alpha
        if keep is not None:
            grad = grad * keep
            dropped = alpha * keep
        d_scores = alpha * (grad - (grad * alpha).sum(-1, keepdim=True))
        d_scores = d_scores.mul_(ctx.scale)
        d_s = d_scores.transpose(1, 2).to(dtype)  # [N_p, F, 2]
        left = torch.cat([d_s, dropped.transpose(1, 2).to(dtype)], dim=2)  # [N_p, F, 4]
        right = torch.cat([queries.transpose(1, 2), d_pooled], dim=1)  # [N_p, 4, d]
        d_block = torch.bmm(left, right)
        # (dS^T @ block)^T rather than block^T @ dS: same product, but MKL reads the block row-major (3x faster).
        d_queries = torch.bmm(d_scores.to(dtype), block).transpose(1, 2)
        return d_block, d_queries, d_scores[:, 0], None, None, None


def dropout_mask(shape: tuple[int, ...], p: float, device: torch.device) -> Tensor:
    """Scaled keep-mask (``0`` or ``1/(1-p')``) for dropout, cheap on CPU.

    On CPU, one random int32 gives three independent random bytes, so a mask costs a third of the
    random numbers ``torch.bernoulli`` draws (CPU dropout was 15 % of a training step). ``p`` is rounded
    to a multiple of 1/256 (``p'``). On other devices this is ``bernoulli`` as usual.
    """
    if device.type != "cpu":
        return torch.empty(shape, device=device).bernoulli_(1.0 - p).div_(1.0 - p)
    n = math.prod(shape)
    threshold = min(255, round(p * 256))
    words = torch.empty(
        (n + 2) // 3, dtype=torch.int32
    ).random_()  # uniform in [0, 2^31): 3 low bytes uniform
    random_bytes = words.view(torch.uint8).view(-1, 4)[:, :3].reshape(-1)[:n].view(shape)
    return (random_bytes >= threshold).to(torch.float32).mul_(256.0 / (256 - threshold))


def feature_dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """Inverted dropout with :func:`dropout_mask` (``F.dropout`` off CPU)."""
    if not training or p <= 0:
        return x
    if x.device.type != "cpu":
        return F.dropout(x, p, True)
    return x * dropout_mask(tuple(x.shape), p, x.device).to(x.dtype)


def _gather_or_zero(x: Tensor, index: Tensor) -> Tensor:
    """``x[index]`` with zero rows where ``index == -1``."""
    if x.shape[0] == 0:
        return x.new_zeros(index.shape[0], x.shape[1])
    out = x[index.clamp(min=0)]
    return out * (index >= 0).unsqueeze(-1).to(out.dtype)


def _masked_softmax(scores: Tensor, mask: Tensor) -> Tensor:
    """Softmax over the last dim in (at least) float32; rows without any valid entry give zeros, not NaN."""
    scores = scores.to(torch.promote_types(scores.dtype, torch.float32))
    scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    return torch.softmax(scores, dim=-1) * mask
