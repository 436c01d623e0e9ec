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

Readout (``readout="default"``)
    ``z = W_r [h^0_c || h^1_c || ... || h^L_c || E[last item]] + b_r`` with ``W_r`` a linear map to
    ``d``; scores over the catalogue are ``z E^T``. Concatenating the last item's raw embedding (option
    ``readout_last_item``) gives the model a direct copy of the strongest signal of session
    recommendation, the most recent item, which the attention layers would otherwise have to preserve
    through the ``tanh`` updates.

Readout (``readout="paper"``, the reference code's)
    ``z = W_r [h^1_c || ... || h^L_c || h^{L-1}_last]``, no bias and no initial state ``h^0_c``; the
    last item enters (with ``readout_last_item``) by its *updated* state, not its raw embedding. The
    reference updates every node of the whole subgraph ``L`` times and reads the last item after layer
    ``L``; in the ``L``-hop computation tree the deepest state of the last item (a hop-1 node) is the
    one after layer ``L - 1`` (its raw embedding when ``L = 1``), which sees as far as the centre's.

Weight tying (``tie_weights``, the reference code's)
    The reference has, per layer, one matrix per node *type* -- ``W_u`` for sessions, ``W_i`` for
    items -- used both to transform a node as a child (the message) and as a parent (the long-term
    query), and no short-term query matrix: the query is the last child's message. So in layer ``l``
    the session<-items conv has ``W_1 = W_i^l, W_2 = W_u^l`` and the item<-sessions conv
    ``W_1 = W_u^l, W_2 = W_i^l`` (the same two modules), and both drop ``W_3``
    (``e'_j = (W_1 h_last)^T (W_1 h_j) / sqrt(d)``). Untied (the default), each conv has its own
    ``W_1, W_2, W_3``: ``4 d^2`` parameters more per layer below the last, ``d^2`` in the last.

Efficiency
    * The leaf hop (hop ``L``) is only ever *read* through ``W_1`` (and ``W_3`` for each parent's
      last child), and the initial session state is linear in the item embeddings. So a session leaf
      hop's messages are ``mean_j (W_1 E)[ctx_j] + W_1 b`` with ``W_1 E`` computed once per distinct
      context item of the batch (a mean over that small table, :func:`~gnn_recsys.models.bag.bag_mean`:
      a sparse product on CPU, whose backward is far cheaper than ``embedding_bag``'s), never per node.
    * Leaf nodes with the same key (an item; a session edge event with the same context window) are
      de-duplicated into shared rows before any tensor work: on the synthetic 1M-event benchmark a
      batch's 137k hop-2 nodes are 57k distinct rows.
    * All item embeddings of a batch are read in one gather, so autograd builds one dense
      ``[num_items, d]`` gradient per step (two with the loss) instead of one per use; for big
      catalogues on CPU ``sparse_embedding=True`` avoids even that.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gnn_recsys.models.bag import bag_mean
from gnn_recsys.models.batch import NUM_EVENT_TYPES, DGSRBatch, HopBlock, make_batch
from gnn_recsys.models.config import ModelConfig, Readout
from gnn_recsys.models.conv.dgrn_conv import Attention, DGRNConv
from gnn_recsys.models.topk import keep_items_in_window, recent_history_items, topk_blocked

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
        readout_last_item: concatenate the last prefix item (its embedding, or with ``readout="paper"``
            its deepest state) in the readout.
        readout: ``"default"`` or ``"paper"`` (see the module docstring).
        tie_weights: per-layer weights shared by node type, no ``W_3`` (see the module docstring).
        attention: ``"dense"`` padded blocks or ``"segment"`` per-edge softmax.
        sparse_embedding: sparse gradients for the item table (pair with ``SparseAdam``).
        context_window: (before, after) events that define a neighbour session's initial state; not
            used by the forward pass (the batch carries the windows) but part of the model's input
            definition, so stored with it for inference; ``distinct_sessions`` likewise (the sampler's
            neighbourhood rule).
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
        distinct_sessions: bool = False,
        readout: Readout = "default",
        tie_weights: bool = False,
        neighbour_items: int = 0,
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError("num_layers must be >= 1")
        if readout not in ("default", "paper"):
            raise ValueError(f"readout must be 'default' or 'paper', got {readout!r}")
        self.readout_kind = readout
        self.tie_weights = tie_weights
        self.num_items = num_items
        self.dim = embedding_dim
        self.num_layers = num_layers
        self.readout_last_item = readout_last_item
        self.context_window = (int(context_window[0]), int(context_window[1]))
        self.distinct_sessions = distinct_sessions  # input definition (the sampler's), like context_window
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
                    own_short_query=not tie_weights,
                )
        if tie_weights:  # one W per node type and layer: a type's query matrix is its message matrix
            for layer in range(1, num_layers):
                session_conv, item_conv = convs[f"session{layer}"], convs[f"item{layer}"]
                item_conv.lin_child = session_conv.lin_query_long  # W_u: sessions as children
                item_conv.lin_query_long = session_conv.lin_child  # W_i: items as parents
        self.convs = nn.ModuleDict(convs)
        self.item_max_length = item_max_length
        self.user_max_length = user_max_length
        if readout == "paper":  # h^1..h^L (+ the last item's state), no bias
            readout_in = (num_layers + int(readout_last_item)) * embedding_dim
            self.readout = nn.Linear(readout_in, embedding_dim, bias=False)
        else:
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
        # Learned co-visitation bonus: new items that neighbour sessions had next to the session's items
        # (hop-2 context windows), by the session item's recency and the side of the window. Sparse
        # catalogues leave most item embeddings untrained; this scores such items from counts.
        self.neighbour_items = neighbour_items
        self.neighbour_prior = (
            nn.Parameter(
                torch.zeros(num_event_types if type_heads else 1, item_max_length, sum(self.context_window))
            )
            if neighbour_items
            else None
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.item_embedding.weight, std=0.1)
        nn.init.normal_(self.session_bias, std=0.1)
        for conv in self.convs.values():
            conv.reset_parameters()  # type: ignore[operator]
        nn.init.xavier_uniform_(self.readout.weight)
        if self.readout.bias is not None:
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
        return bag_mean(ctx, table, pad) + self.session_bias

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
            message = bag_mean(block.context, conv.lin_child(table), pad)
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
        paper = self.readout_kind == "paper"
        center = [] if paper else [states[0]]
        last_state = None
        if paper and self.readout_last_item and num_layers == 1:  # hop 1 is the leaf: raw embeddings
            last_state = _gather_or_zero(item_emb[0], hops[0].layout.last)
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
            if paper and self.readout_last_item and layer == num_layers - 1:  # the last item's deepest state
                last_state = _gather_or_zero(states[1], hops[0].layout.last)
        if last_state is not None:
            center.append(last_state)
        elif self.readout_last_item and not paper:
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
        total = _summed_prior(
            self.repeat_prior, batch.history_item, batch.history_slot, batch.history_order,
            batch.history_type, event_type,
        )  # fmt: skip
        return torch.where(batch.history_item >= 0, total.clamp(min=1e-30).log(), 0.0)

    def neighbour_bonus(self, batch: DGSRBatch, event_type: Tensor | int | None = None) -> Tensor | None:
        """``[B, M]`` co-visitation bonus of the batch's ``neighbour_item`` (None when off).

        ``bonus(i) = log(1 + sum_j exp(gamma[t, o_j, s_j]))`` over the occurrences ``j`` of item ``i`` in
        the context windows of neighbour sessions' events on the session's items: ``o_j`` the recency of
        that session item, ``s_j`` the window column, ``t`` the target type. Never negative, so an item
        gains from being next to the session's items (``gamma = 0`` gives ``log(1 + count)``).
        """
        if self.neighbour_prior is None or batch.neighbour_item is None:
            return None
        total = _summed_prior(
            self.neighbour_prior, batch.neighbour_item, batch.neighbour_slot, batch.neighbour_order,
            batch.neighbour_side, event_type,
        )  # fmt: skip
        return torch.where(batch.neighbour_item >= 0, total.log1p(), 0.0)

    def item_bonus(
        self, batch: DGSRBatch, event_type: Tensor | int | None = None
    ) -> tuple[Tensor, Tensor] | None:
        """``(items [B, H + M], bonus [B, H + M])``: the repeat and the co-visitation bonus together
        (distinct items per row: neighbour items exclude the history), or None when both are off."""
        return _joined_bonus(
            batch, self.history_bonus(batch, event_type), self.neighbour_bonus(batch, event_type)
        )

    def score_all(self, session_repr: Tensor) -> Tensor:
        """Scores ``[B, num_items]`` of every catalogue item."""
        return session_repr @ self.item_embedding.weight.to(session_repr.dtype).T

    @classmethod
    def from_config(cls, num_items: int, config: ModelConfig) -> DGSR:
        """The model described by ``config`` (see :class:`~gnn_recsys.models.config.ModelConfig`)."""
        return cls(
            num_items,
            config.embedding_dim,
            config.num_layers,
            item_max_length=config.item_max_length,
            user_max_length=config.user_max_length,
            dropout=config.dropout,
            attn_dropout=config.attn_dropout,
            readout_last_item=config.readout_last_item,
            attention=config.attention,
            context_window=config.context_window,
            sparse_embedding=config.sparse_embedding,
            type_heads=config.type_heads,
            repeat_bonus=config.repeat_bonus,
            history_length=config.history_length if config.repeat_bonus else None,
            distinct_sessions=config.distinct_sessions,
            readout=config.readout,
            tie_weights=config.tie_weights,
            neighbour_items=config.neighbour_items,
        )

    @property
    def config(self) -> ModelConfig:
        """The :class:`ModelConfig` that rebuilds this architecture (with :meth:`from_config`)."""
        conv0 = self.conv(1, 0)
        return ModelConfig(
            embedding_dim=self.dim,
            num_layers=self.num_layers,
            item_max_length=self.item_max_length,
            user_max_length=self.user_max_length,
            context_window=self.context_window,
            distinct_sessions=self.distinct_sessions,
            dropout=conv0.msg_dropout.p,
            attn_dropout=conv0.attn_dropout.p,
            readout_last_item=self.readout_last_item,
            readout=self.readout_kind,
            tie_weights=self.tie_weights,
            attention=conv0.attention,
            type_heads=self.type_head is not None,
            repeat_bonus=self.repeat_prior is not None,
            history_length=self.history_length,
            sparse_embedding=self.item_embedding.sparse,
            neighbour_items=self.neighbour_items,
        )

    def loss(
        self,
        batch: DGSRBatch,
        loss_fn: nn.Module,
        generator: torch.Generator | None = None,
        type_weights: Tensor | None = None,
    ) -> Tensor:
        """Training loss of a batch with targets: each sample through the head of its target's type.

        ``type_weights [3]`` weighs a sample by its target's event type (typed samples only).
        """
        if batch.target is None:
            raise ValueError("DGSR.loss needs a batch with targets")
        reps = self(batch)
        if batch.target_type is not None:
            reps = self.typed(reps, batch.target_type)
        history = self.item_bonus(batch, batch.target_type)
        weight = None
        if type_weights is not None and batch.target_type is not None:
            weight = type_weights[batch.target_type]
        return loss_fn(
            reps, batch.target, self.item_embedding.weight, generator, history=history, weight=weight
        )

    @torch.no_grad()
    def topk(
        self,
        reps: Tensor,
        batch: DGSRBatch,
        k: int,
        event_type: Tensor | int | None = None,
        block_size: int = 65_536,
        *,
        keep_session_items: int = 0,
        keep_by: str = "recency",
    ) -> tuple[Tensor, Tensor]:
        """Top-``k`` item indices and scores over the whole catalogue, repeat bonus included.

        ``reps`` are :meth:`forward`'s output for ``batch``; ``event_type`` picks a head (a type per
        sample, one type for all, or None for the shared representation). The catalogue is scanned in
        blocks, so memory is ``[B, block_size + k]`` whatever its size. ``keep_session_items = W > 0``
        puts the session's ``W`` most recent distinct items (of its last ``history_length`` events)
        among the first ``W`` slots whatever their scores, the best-scored new items filling the rest:
        the list never finds fewer repeats than the session's own recent items would.
        ``keep_by="type"`` keeps ordered, then carted, then clicked items (each by recency);
        ``"score"`` the ``W`` own items the model scores highest (all three: the same set while the
        session holds at most ``W`` distinct items).
        """
        query = reps.float() if event_type is None else self.typed(reps, event_type).float()
        items = self.item_embedding.weight.detach().float()
        bonus = self.history_bonus(batch, event_type)  # once: the window below reuses it
        candidates = _joined_bonus(batch, bonus, self.neighbour_bonus(batch, event_type))
        history = None if candidates is None else (candidates[0], candidates[1].float())
        index, score = topk_blocked(query, items, k, block_size, history=history)
        if keep_session_items <= 0 or batch.history_item is None or batch.history_item.shape[1] == 0:
            return index, score
        width = min(keep_session_items, index.shape[1])  # the window (the list may be shorter)
        # [B, H] scores of the session's own items, aligned with history_item's slots
        kept_score = (query.unsqueeze(1) * items[batch.history_item.clamp(min=0)]).sum(dim=-1)
        if bonus is not None:
            kept_score = kept_score + bonus.float()
        if keep_by == "score":  # the session's own items the model itself ranks highest
            ranked = kept_score.masked_fill(batch.history_item < 0, float("-inf"))
            rank = ranked.argsort(dim=1, descending=True, stable=True).argsort(dim=1)
            kept = torch.where((rank < width) & (batch.history_item >= 0), batch.history_item, -1)
        elif keep_by in ("recency", "type"):
            kept = recent_history_items(
                batch.history_item,
                batch.history_slot,
                batch.history_order,
                width,
                history_type=batch.history_type if keep_by == "type" else None,
            )
        else:
            raise ValueError(f"keep_by must be 'recency', 'type' or 'score', got {keep_by!r}")
        order = torch.where(kept >= 0, 0, 1).argsort(dim=1, stable=True)[:, :width]
        kept, kept_score = torch.gather(kept, 1, order), torch.gather(kept_score, 1, order)
        if kept.shape[1] < width:  # fewer history slots than the window: pad
            pad = width - kept.shape[1]
            kept = torch.cat([kept, kept.new_full((kept.shape[0], pad), -1)], dim=1)
            kept_score = torch.cat([kept_score, kept_score.new_zeros((kept.shape[0], pad))], dim=1)
        return keep_items_in_window(index, score, kept, kept_score)


def _joined_bonus(
    batch: DGSRBatch, history_bonus: Tensor | None, neighbour_bonus: Tensor | None
) -> tuple[Tensor, Tensor] | None:
    """``(items, bonus)`` of the history and the neighbour items side by side (the parts that are on)."""
    parts = [
        (items, bonus)
        for items, bonus in ((batch.history_item, history_bonus), (batch.neighbour_item, neighbour_bonus))
        if bonus is not None
    ]
    if len(parts) < 2:
        return parts[0] if parts else None
    return torch.cat([p[0] for p in parts], dim=1), torch.cat([p[1] for p in parts], dim=1)


def _summed_prior(  # noqa: PLR0917
    prior: Tensor, items: Tensor, slot: Tensor, order: Tensor, column: Tensor, event_type: Tensor | int | None
) -> Tensor:
    """``[B, W]``: per item slot, ``sum_j exp(prior[t, order_j, column_j])`` over its occurrences ``j``
    (``slot_j`` into the flat ``[B * W]`` of ``items``); ``t`` is the target type's head (0 with one)."""
    num_samples, width = items.shape
    order = order.clamp(max=prior.shape[1] - 1)
    if prior.shape[0] == 1 or event_type is None:
        head = torch.zeros_like(order)
    elif isinstance(event_type, int):
        head = torch.full_like(order, event_type)
    else:
        head = event_type[torch.div(slot, max(width, 1), rounding_mode="floor")]
    logit = prior[head, order, column]
    return logit.new_zeros(num_samples * width).index_add_(0, slot, logit.exp()).view(num_samples, width)


def _with_pad_row(emb: Tensor) -> Tensor:
    return torch.cat([emb, emb.new_zeros(1, emb.shape[1])])


def _gather_or_zero(x: Tensor, index: Tensor) -> Tensor:
    if x.shape[0] == 0:
        return x.new_zeros(index.shape[0], x.shape[1])
    return x[index.clamp(min=0)] * (index >= 0).unsqueeze(-1).to(x.dtype)


__all__ = ["DGSR", "NUM_EVENT_TYPES", "DGSRBatch", "HopBlock", "ModelConfig", "make_batch"]
