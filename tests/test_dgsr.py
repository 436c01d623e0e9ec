"""DGSR model on real sampler batches: tree/layer logic vs a recursive reference, causality, wiring."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from gnn_recsys.data.synthetic import SyntheticConfig, synthetic_events
from gnn_recsys.graph.sampler import TemporalSubgraphSampler, training_samples
from gnn_recsys.graph.temporal_graph import TemporalGraph, build_temporal_graph
from gnn_recsys.models.conv.dgrn_conv import ChildLayout
from gnn_recsys.models.dgsr import DGSR, make_batch
from gnn_recsys.models.loss import add_history_bonus

D = 8


@pytest.fixture(scope="module")
def events() -> pl.DataFrame:
    return synthetic_events(
        SyntheticConfig(num_items=120, num_train_sessions=150, num_test_sessions=0, seed=5)
    )


@pytest.fixture(scope="module")
def graph(events: pl.DataFrame) -> TemporalGraph:
    return build_temporal_graph(events)


def _model(
    graph: TemporalGraph,
    k_hop: int,
    attention: str = "dense",
    *,
    readout_last_item: bool = True,
    readout: str = "default",
    tie_weights: bool = False,
) -> DGSR:
    torch.manual_seed(0)
    return DGSR(
        graph.num_items,
        D,
        k_hop,
        item_max_length=5,
        user_max_length=4,
        dropout=0.0,
        attention=attention,
        readout_last_item=readout_last_item,
        readout=readout,
        tie_weights=tie_weights,
    ).eval()


def _some_samples(graph: TemporalGraph, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    session, cut_ts, _ = training_samples(graph)
    pick = np.random.default_rng(seed).choice(len(session), n, replace=False)
    return session[pick], cut_ts[pick]


def _reference(model: DGSR, graph: TemporalGraph, subgraph, k_hop: int) -> torch.Tensor:
    """Node by node recursion over each sample's computation tree (no batching, no linear tricks)."""
    emb = model.item_embedding.weight
    hops = subgraph.hops
    children_of = [
        {int(p): np.flatnonzero(np.asarray(hop.parent) == p) for p in np.unique(np.asarray(hop.parent))}
        for hop in hops
    ]  # children_of[h][p] = positions in hop h+1 of the children of node p of hop h

    def initial(h: int, i: int) -> torch.Tensor:
        if h == 0:
            kids = children_of[0].get(i, np.array([], dtype=int))
            if len(kids) == 0:
                return model.session_bias
            return emb[np.asarray(hops[0].node)[kids]].mean(0)
        if h % 2 == 1:
            return emb[int(np.asarray(hops[h - 1].node)[i])]
        ctx = np.asarray(hops[h - 1].context)[i]
        items = np.asarray(graph.ev_item)[ctx[ctx >= 0]]
        return model.session_bias + (emb[items].mean(0) if len(items) else 0)

    def state(h: int, i: int, layer: int) -> torch.Tensor:
        if layer == 0:
            return initial(h, i)
        kids = children_of[h].get(i, np.array([], dtype=int))
        hop = hops[h]
        x_child = (
            torch.stack([state(h + 1, int(j), layer - 1) for j in kids]) if len(kids) else torch.zeros(0, D)
        )
        layout = ChildLayout.from_edges(
            torch.zeros(len(kids), dtype=torch.long),
            torch.as_tensor(np.asarray(hop.order)[kids]),
            torch.as_tensor(np.asarray(graph.ev_type)[np.asarray(hop.event)[kids]].astype(np.int64)),
            1,
        )
        return model.conv(layer, h)(state(h, i, layer - 1)[None], x_child, layout)[0]

    paper = model.readout_kind == "paper"
    out = []
    for b in range(len(subgraph.session)):
        parts = [state(0, b, layer) for layer in range(1 if paper else 0, k_hop + 1)]
        if model.readout_last_item:
            kids = children_of[0].get(b, np.array([], dtype=int))
            first = kids[np.asarray(hops[0].order)[kids] == 0]
            if not len(first):
                parts.append(torch.zeros(D))
            elif paper:  # the last item's state after layer L - 1
                parts.append(state(1, int(first[0]), k_hop - 1))
            else:
                parts.append(emb[int(np.asarray(hops[0].node)[first[0]])])
        out.append(model.readout(torch.cat(parts)))
    return torch.stack(out)


@pytest.mark.parametrize(
    ("k_hop", "attention", "readout", "tie_weights"),
    [
        (1, "dense", "default", False),
        (2, "dense", "default", False),
        (2, "segment", "default", False),
        (3, "dense", "default", False),
        (1, "dense", "paper", True),
        (2, "segment", "paper", False),
        (2, "dense", "default", True),
        (3, "dense", "paper", True),
    ],
)
def test_batched_forward_matches_tree_recursion(
    graph: TemporalGraph, k_hop: int, attention: str, readout: str, tie_weights: bool
) -> None:
    model = _model(graph, k_hop, attention, readout=readout, tie_weights=tie_weights)
    sessions, cut_ts = _some_samples(graph, 6 if k_hop < 3 else 3)
    sampler = TemporalSubgraphSampler(graph, item_max_length=5, user_max_length=4, k_hop=k_hop)
    subgraph = sampler.sample(sessions, cut_ts)
    with torch.no_grad():
        got = model(make_batch(graph, subgraph, cut_ts, k_hop))
        want = _reference(model, graph, subgraph, k_hop)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_context_computed_without_sampler_windows_gives_the_same_model_input(graph: TemporalGraph) -> None:
    sessions, cut_ts = _some_samples(graph, 8)
    with_ctx = TemporalSubgraphSampler(graph, item_max_length=5, user_max_length=4, k_hop=2).sample(
        sessions, cut_ts
    )
    without = TemporalSubgraphSampler(graph, 5, 4, 2, context_window=None).sample(sessions, cut_ts)
    model = _model(graph, 2)
    with torch.no_grad():
        a = model(make_batch(graph, with_ctx, cut_ts, 2))
        b = model(make_batch(graph, without, cut_ts, 2, context_window=(2, 2)))
    torch.testing.assert_close(a, b)


def test_batch_fields_match_the_graph(graph: TemporalGraph) -> None:
    sessions, cut_ts = _some_samples(graph, 10, seed=1)
    subgraph = TemporalSubgraphSampler(graph, item_max_length=5, user_max_length=4, k_hop=2).sample(
        sessions, cut_ts
    )
    batch = make_batch(graph, subgraph, cut_ts, 2, target=np.arange(10))
    ptr, ev_ts, ev_item = graph.session_ptr, graph.ev_ts, graph.ev_item
    for b, (s, cut) in enumerate(zip(sessions, cut_ts, strict=True)):
        prefix = [e for e in range(ptr[s], ptr[s + 1]) if ev_ts[e] < cut]
        assert batch.prefix_count[b] == min(len(prefix), 5)
        assert batch.last_item[b] == ev_item[prefix[-1]]
    hop2 = batch.hops[1]  # the leaf hop: nodes share rows, context is per row
    assert len(hop2.row_node) < len(hop2.node)
    ctx = np.asarray(subgraph.hops[1].context)
    per_node = hop2.context[hop2.layout.source]
    items = hop2.context_items[per_node.clamp(max=len(hop2.context_items) - 1)].numpy()
    valid = per_node.numpy() < len(hop2.context_items)
    np.testing.assert_array_equal(valid, ctx >= 0)
    np.testing.assert_array_equal(items[valid], ev_item[ctx[valid]])
    assert batch.target.tolist() == list(range(10))


def _typed_scores(model: DGSR, batch) -> torch.Tensor:
    """``[3, B, N]``: every catalogue item's score per target type, repeat and co-visitation bonus included."""
    reps = model(batch)
    out = []
    for event_type in range(3):
        out.append(
            add_history_bonus(
                model.score_all(model.typed(reps, event_type)), model.item_bonus(batch, event_type)
            )
        )
    return torch.stack(out)


def test_scores_ignore_events_at_or_after_the_cut(events: pl.DataFrame, graph: TemporalGraph) -> None:
    """Per sample, deleting every event with ts >= its cut (its own session's later events included)
    leaves every score unchanged: the GNN, the type heads, the repeat bonus over the history and the
    co-visitation bonus over the neighbours' context windows."""
    torch.manual_seed(0)
    model = DGSR(
        graph.num_items,
        D,
        2,
        item_max_length=5,
        user_max_length=4,
        dropout=0.0,
        type_heads=True,
        repeat_bonus=True,
        history_length=30,
        neighbour_items=20,
    ).eval()
    with torch.no_grad():  # heads and priors start at zero: make them matter
        model.type_head.weight.normal_(std=0.3)
        model.type_head.bias.normal_(std=0.3)
        model.repeat_prior.normal_()
        model.neighbour_prior.normal_()

    def scores(g: TemporalGraph, sessions: np.ndarray, cuts: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        subgraph = TemporalSubgraphSampler(g, item_max_length=5, user_max_length=4, k_hop=2).sample(
            sessions, cuts
        )
        batch = make_batch(g, subgraph, cuts, 2, history_length=30, neighbour_items=20)
        assert batch.neighbour_item is not None and (batch.neighbour_item >= 0).any()
        with torch.no_grad():
            return _typed_scores(model, batch), batch.history_item

    lengths = np.diff(graph.session_ptr)
    sessions = np.flatnonzero(lengths >= 6)[:8]  # long enough to cut in the middle
    middle = graph.session_ptr[sessions] + lengths[sessions] // 2
    cuts = graph.ev_ts[middle].astype(np.int64)
    full, history = scores(graph, sessions, cuts)
    assert not torch.allclose(full[0], full[2])  # the heads are in play
    for b, (s, cut) in enumerate(zip(sessions, cuts, strict=True)):
        past = build_temporal_graph(events.filter(pl.col("ts") < cut), item_aids=graph.item_aid)
        in_past = past.session_to_index(graph.session_id[[s]])
        alone, _ = scores(past, in_past, np.array([cut]))
        torch.testing.assert_close(alone[:, 0], full[:, b])
    # ...while moving the cut to after each session's end does change them, through its own later
    # items in the history (repeat bonus) as well as through the graph.
    ends = graph.ev_ts[graph.session_ptr[sessions + 1] - 1].astype(np.int64) + 1
    later, later_history = scores(graph, sessions, ends)
    assert not torch.isclose(later, full).all(-1).all(0).any()
    assert not torch.equal(later_history, history)


def test_empty_prefix_falls_back_to_the_session_bias(graph: TemporalGraph) -> None:
    first_ts = graph.ev_ts[graph.session_ptr[:3]]  # nothing strictly before a session's first event
    sessions = np.arange(3)
    subgraph = TemporalSubgraphSampler(graph, item_max_length=5, user_max_length=4, k_hop=2).sample(
        sessions, first_ts
    )
    model = _model(graph, 2, readout_last_item=True)
    batch = make_batch(graph, subgraph, first_ts, 2)
    assert batch.prefix_count.tolist() == [0, 0, 0] and batch.last_item.tolist() == [-1, -1, -1]
    with torch.no_grad():
        out = model(batch)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[0], out[1])  # no history: every such session looks the same


def test_every_parameter_receives_gradient(graph: TemporalGraph) -> None:
    model = _model(graph, 2).train()
    sessions, cut_ts = _some_samples(graph, 32, seed=2)
    subgraph = TemporalSubgraphSampler(graph, item_max_length=5, user_max_length=4, k_hop=2).sample(
        sessions, cut_ts
    )
    reps = model(make_batch(graph, subgraph, cut_ts, 2))
    model.score_all(reps).logsumexp(1).sum().backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert missing == []
    assert set(model.convs) == {"session1", "item1", "session2"}  # layer 2 needs no item<-sessions conv


def test_too_few_hops_is_a_clear_error(graph: TemporalGraph) -> None:
    sessions, cut_ts = _some_samples(graph, 4)
    subgraph = TemporalSubgraphSampler(graph, 5, 4, k_hop=1).sample(sessions, cut_ts)
    with pytest.raises(ValueError, match="2 layers but the subgraph has only 1"):
        make_batch(graph, subgraph, cut_ts, 2)


@pytest.mark.parametrize("history_length", [None, 3, 40])
def test_history_holds_the_distinct_prefix_items_and_their_occurrences(
    graph: TemporalGraph, history_length: int | None
) -> None:
    """The repeat bonus sees each sample's last ``history_length`` events before the cut (hop 1 when None)."""
    sessions, cut_ts = _some_samples(graph, 12, seed=2)
    subgraph = TemporalSubgraphSampler(graph, item_max_length=5, user_max_length=4, k_hop=2).sample(
        sessions, cut_ts
    )
    batch = make_batch(graph, subgraph, cut_ts, 2, history_length=history_length)
    width = batch.history_item.shape[1]
    ptr, ev_ts, ev_item, ev_type = graph.session_ptr, graph.ev_ts, graph.ev_item, graph.ev_type
    occurrences: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for b, (s, cut) in enumerate(zip(sessions, cut_ts, strict=True)):
        prefix = [e for e in range(ptr[s], ptr[s + 1]) if ev_ts[e] < cut][-(history_length or 5) :]
        want = sorted({int(ev_item[e]) for e in prefix})
        got = [int(i) for i in batch.history_item[b] if i >= 0]
        assert got == want
        for order, e in enumerate(reversed(prefix)):
            occurrences.setdefault((b, int(ev_item[e])), []).append((order, int(ev_type[e])))
    # every edge points at the slot of its own (sample, item), with its order and type
    got_occurrences: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for slot, order, event_type in zip(
        batch.history_slot.tolist(), batch.history_order.tolist(), batch.history_type.tolist(), strict=True
    ):
        b, position = divmod(slot, width)
        key = (b, int(batch.history_item[b, position]))
        got_occurrences.setdefault(key, []).append((order, event_type))
    assert {k: sorted(v) for k, v in got_occurrences.items()} == {
        k: sorted(v) for k, v in occurrences.items()
    }


def test_history_bonus_starts_as_log_count_and_follows_the_prior(graph: TemporalGraph) -> None:
    sessions, cut_ts = _some_samples(graph, 8, seed=3)
    subgraph = TemporalSubgraphSampler(graph, item_max_length=5, user_max_length=4, k_hop=2).sample(
        sessions, cut_ts
    )
    batch = make_batch(graph, subgraph, cut_ts, 2, history_length=30)
    model = DGSR(
        graph.num_items, 8, 2, item_max_length=5, user_max_length=4, repeat_bonus=True, history_length=30
    )
    counts = torch.zeros(batch.history_item.numel()).index_add_(
        0, batch.history_slot, torch.ones(len(batch.history_slot))
    )
    valid = batch.history_item >= 0
    bonus = model.history_bonus(batch)
    torch.testing.assert_close(bonus[valid], counts.view_as(bonus)[valid].log())
    with torch.no_grad():
        model.repeat_prior[0, 0, :] = 5.0  # the most recent occurrence dominates
    bonus = model.history_bonus(batch)
    most_recent = batch.history_slot[batch.history_order == 0]
    assert (bonus.view(-1)[most_recent] > 4.9).all()


def test_neighbour_items_are_the_new_context_items_by_recency_weight(graph: TemporalGraph) -> None:
    """Per sample, a straightforward reference over the hop-2 edges: every item in an edge's context
    window (before the cut) that is not in the sample's history, weighted 1 / (1 + recency of the
    session item the edge hangs below); the ``limit`` heaviest kept (ties: smaller item first), each
    occurrence pointing at its item's slot with its recency and window column."""
    sessions, cut_ts = _some_samples(graph, 16, seed=4)
    subgraph = TemporalSubgraphSampler(graph, item_max_length=5, user_max_length=4, k_hop=2).sample(
        sessions, cut_ts
    )
    limit = 6
    batch = make_batch(graph, subgraph, cut_ts, 2, history_length=30, neighbour_items=limit)
    hop1, hop2 = subgraph.hops
    width = batch.neighbour_item.shape[1]
    got_occurrences: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for slot, order, side in zip(
        batch.neighbour_slot.tolist(),
        batch.neighbour_order.tolist(),
        batch.neighbour_side.tolist(),
        strict=True,
    ):
        b, position = divmod(slot, width)
        got_occurrences.setdefault((b, int(batch.neighbour_item[b, position])), []).append((order, side))
    checked = 0
    for b in range(len(sessions)):
        history = {int(i) for i in batch.history_item[b] if i >= 0}
        weight: dict[int, float] = {}
        occurrences: dict[int, list[tuple[int, int]]] = {}
        for edge in range(len(hop2.node)):
            parent = int(hop2.parent[edge])
            if int(hop1.parent[parent]) != b:
                continue
            order = int(hop1.order[parent])
            for side, event in enumerate(hop2.context[edge]):
                if event < 0:
                    continue
                assert graph.ev_ts[event] < cut_ts[b]  # the window never reaches the cut
                item = int(graph.ev_item[event])
                if item in history:
                    continue
                weight[item] = weight.get(item, 0.0) + 1.0 / (1 + order)
                occurrences.setdefault(item, []).append((order, side))
        ranked = sorted(weight, key=lambda i: (-weight[i], i))[:limit]
        got = [int(i) for i in batch.neighbour_item[b] if i >= 0]
        assert sorted(got) == sorted(ranked)
        for item in ranked:
            assert sorted(got_occurrences[(b, item)]) == sorted(occurrences[item])
        checked += len(ranked)
    assert checked > 0 and len(got_occurrences) == checked
    assert (batch.neighbour_item >= 0).sum() == checked


def test_neighbour_bonus_starts_as_log_one_plus_count_and_ranks_with_the_prior(graph: TemporalGraph) -> None:
    sessions, cut_ts = _some_samples(graph, 8, seed=5)
    subgraph = TemporalSubgraphSampler(graph, item_max_length=5, user_max_length=4, k_hop=2).sample(
        sessions, cut_ts
    )
    batch = make_batch(graph, subgraph, cut_ts, 2, history_length=30, neighbour_items=10)
    model = DGSR(
        graph.num_items, 8, 2, item_max_length=5, user_max_length=4, repeat_bonus=True, history_length=30,
        neighbour_items=10,
    ).eval()  # fmt: skip
    counts = torch.zeros(batch.neighbour_item.numel()).index_add_(
        0, batch.neighbour_slot, torch.ones(len(batch.neighbour_slot))
    )
    valid = batch.neighbour_item >= 0
    bonus = model.neighbour_bonus(batch)
    torch.testing.assert_close(bonus[valid], counts.view_as(bonus)[valid].log1p())
    assert (bonus[~valid] == 0).all()
    # A large prior puts the neighbour items at the top of the full-catalogue list (history has none).
    with torch.no_grad():
        model.neighbour_prior.fill_(20.0)
        model.repeat_prior.fill_(-20.0)
        reps = model(batch)
    index, _ = model.topk(reps, batch, 3)
    for b in range(len(sessions)):
        found = {int(i) for i in batch.neighbour_item[b] if i >= 0}
        assert {int(i) for i in index[b][: min(3, len(found))]} <= found


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())  # shared parameters count once


@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("readout_last_item", [True, False])
def test_paper_readout_and_tied_weights_remove_the_parameters_the_equations_say(
    graph: TemporalGraph, num_layers: int, readout_last_item: bool
) -> None:
    """Paper readout: one d-block of readout input (h^0) and the bias fewer. Tying: per layer below the
    last, the item conv reuses the session conv's W_1/W_2 and neither has W_3 (4 d^2); the last layer
    (session conv only) loses its W_3 (d^2)."""
    counts = {}
    for readout in ("default", "paper"):
        for tie in (False, True):
            kwargs = {"readout_last_item": readout_last_item, "readout": readout, "tie_weights": tie}
            counts[readout, tie] = _count(_model(graph, num_layers, **kwargs))
    tied_saving = 4 * D * D * (num_layers - 1) + D * D
    readout_saving = D * D + D
    assert counts["default", False] - counts["default", True] == tied_saving
    assert counts["default", False] - counts["paper", False] == readout_saving
    assert counts["default", False] - counts["paper", True] == tied_saving + readout_saving


def test_tied_weights_are_one_module_per_node_type_and_layer_and_all_learn(graph: TemporalGraph) -> None:
    model = _model(graph, 3, readout="paper", tie_weights=True).train()
    for layer in (1, 2):
        session, item = model.convs[f"session{layer}"], model.convs[f"item{layer}"]
        assert item.lin_child is session.lin_query_long and item.lin_query_long is session.lin_child
        assert session.lin_query_short is None and item.lin_query_short is None
    assert model.convs["session1"].lin_child is not model.convs["session2"].lin_child  # per layer
    assert model.readout.bias is None and model.readout.in_features == 4 * D  # h^1..h^3 + last item
    sessions, cut_ts = _some_samples(graph, 24, seed=4)
    subgraph = TemporalSubgraphSampler(graph, item_max_length=5, user_max_length=4, k_hop=3).sample(
        sessions, cut_ts
    )
    reps = model(make_batch(graph, subgraph, cut_ts, 3))
    assert reps.shape == (24, D) and torch.isfinite(reps).all()
    model.score_all(reps).logsumexp(1).sum().backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert missing == []
    # the config round-trips the options (the MLflow model rebuilds the architecture from it)
    config = model.config
    assert (config.readout, config.tie_weights, config.num_layers) == ("paper", True, 3)
    rebuilt = DGSR.from_config(graph.num_items, config)
    assert rebuilt.state_dict().keys() == model.state_dict().keys()


def test_paper_readout_reads_the_updated_last_item_not_its_embedding(graph: TemporalGraph) -> None:
    """Changing the last item's raw embedding only through the readout: the default readout moves, the
    paper readout (which reads the item's updated state, not ``E[last]``) moves only through the GNN."""
    sessions, cut_ts = _some_samples(graph, 6, seed=5)
    subgraph = TemporalSubgraphSampler(graph, item_max_length=5, user_max_length=4, k_hop=2).sample(
        sessions, cut_ts
    )
    batch = make_batch(graph, subgraph, cut_ts, 2)
    for readout in ("default", "paper"):
        model = _model(graph, 2, readout=readout)
        with torch.no_grad():
            before = model(batch)
            # zero the readout's weights on everything but the last-item block
            model.readout.weight[:, :-D] = 0.0
            only_last = model(batch) - (model.readout.bias if model.readout.bias is not None else 0.0)
            last_emb = model.item_embedding.weight[batch.last_item]
            direct = last_emb @ model.readout.weight[:, -D:].T
        if readout == "default":
            torch.testing.assert_close(only_last, direct)
        else:  # an updated state: tanh-bounded, and not the raw embedding
            assert not torch.allclose(only_last, direct)
        assert torch.isfinite(before).all()
