"""DGRNConv: the equations of one DGRN direction, checked against a per-parent reference loop."""

from __future__ import annotations

import math

import pytest
import torch

from gnn_recsys.models.conv.dgrn_conv import BlockAttention, ChildLayout, DGRNConv, feature_dropout

D = 8


def _random_relation(seed: int, num_parents: int = 6, max_children: int = 5) -> tuple[ChildLayout, int]:
    """Children of each parent contiguous, sorted by order; parent 2 has none."""
    g = torch.Generator().manual_seed(seed)
    counts = torch.randint(1, max_children + 1, (num_parents,), generator=g)
    counts[2] = 0
    index = torch.repeat_interleave(torch.arange(num_parents), counts)
    order = torch.cat([torch.arange(int(c)) for c in counts])
    edge_type = torch.randint(0, 3, (len(index),), generator=g)
    return ChildLayout.from_edges(index, order, edge_type, num_parents), len(index)


def _reference(
    conv: DGRNConv, x_parent: torch.Tensor, x_child: torch.Tensor, layout: ChildLayout
) -> torch.Tensor:
    """The docstring's equations, one parent at a time."""
    out = []
    for p in range(layout.num_parents):
        children = torch.nonzero(layout.index == p).flatten()
        h_p = x_parent[p]
        if len(children) == 0:
            h_long = torch.zeros(D)
            h_short = torch.zeros(D)
        else:
            w1h = conv.lin_child(x_child[children])
            r = layout.order[children].clamp(max=conv.max_order - 1)
            t = layout.edge_type[children]
            key = w1h + conv.order_key.weight[r] + conv.type_key.weight[t]
            value = w1h + conv.order_value.weight[r] + conv.type_value.weight[t]
            alpha = torch.softmax(key @ conv.lin_query_long(h_p) / math.sqrt(D), 0)
            h_long = alpha @ value
            last = children[layout.order[children] == 0][0]
            short = conv.lin_child if conv.lin_query_short is None else conv.lin_query_short
            beta = torch.softmax(w1h @ short(x_child[last]) / math.sqrt(D), 0)
            h_short = beta @ w1h
        out.append(torch.tanh(conv.lin_update(torch.cat([h_long, h_short, h_p]))))
    return torch.stack(out)


@pytest.mark.parametrize("own_short_query", [True, False])
@pytest.mark.parametrize("attention", ["dense", "segment"])
def test_conv_matches_reference_equations(attention: str, own_short_query: bool) -> None:
    torch.manual_seed(0)
    layout, n_child = _random_relation(1)
    # max_order 3 < 5: orders get capped
    conv = DGRNConv(D, max_order=3, attention=attention, own_short_query=own_short_query).eval()
    assert (conv.lin_query_short is None) == (not own_short_query)
    x_parent = torch.randn(layout.num_parents, D)
    x_child = torch.randn(n_child, D)
    with torch.no_grad():
        got = conv(x_parent, x_child, layout)
        want = _reference(conv, x_parent, x_child, layout)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_dense_and_segment_agree_in_values_and_all_gradients() -> None:
    """The dense path's hand-written backward (BlockAttention) against autograd through the segment path."""
    torch.manual_seed(0)
    layout, n_child = _random_relation(2, num_parents=10, max_children=7)
    dense = DGRNConv(D, max_order=8, attention="dense").eval()
    segment = DGRNConv(D, max_order=8, attention="segment").eval()
    segment.load_state_dict(dense.state_dict())
    x_parent = torch.randn(layout.num_parents, D, requires_grad=True)
    x_child = torch.randn(n_child, D, requires_grad=True)
    results = []
    for conv in (dense, segment):
        out = conv(x_parent, x_child, layout)
        inputs = [x_parent, x_child, *conv.parameters()]
        results.append((out, torch.autograd.grad(out.square().sum(), inputs)))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-5, atol=1e-6)
    for got, want in zip(results[0][1], results[1][1], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


def test_block_attention_backward_passes_gradcheck_with_dropout_mask() -> None:
    g = torch.Generator().manual_seed(0)
    n_parent, width = 4, 5
    block = torch.randn(n_parent, width, D, dtype=torch.float64, generator=g, requires_grad=True)
    queries = torch.randn(n_parent, D, 2, dtype=torch.float64, generator=g, requires_grad=True)
    extra = torch.randn(n_parent, width, dtype=torch.float64, generator=g, requires_grad=True)
    mask = torch.rand(n_parent, width, generator=g) > 0.3
    mask[1] = False  # a parent without children
    keep = (torch.rand(n_parent, 2, width, generator=g) > 0.2).double() / 0.8

    def fn(block, queries, extra):
        pooled, dropped = BlockAttention.apply(block, queries, extra, mask, keep, 0.3)
        return pooled, dropped

    assert torch.autograd.gradcheck(fn, (block, queries, extra))


def test_feature_dropout_keeps_the_expected_share_and_mean() -> None:
    torch.manual_seed(0)
    x = torch.ones(300_000)
    y = feature_dropout(x, 0.25, training=True)
    assert abs(float((y == 0).float().mean()) - 0.25) < 0.005
    assert abs(float(y.mean()) - 1.0) < 0.01
    assert torch.equal(feature_dropout(x, 0.25, training=False), x)


def test_childless_parent_depends_only_on_its_own_state_and_gets_finite_gradients() -> None:
    torch.manual_seed(0)
    layout, n_child = _random_relation(3)
    conv = DGRNConv(D, max_order=5).eval()
    x_parent = torch.randn(layout.num_parents, D, requires_grad=True)
    x_child = torch.randn(n_child, D, requires_grad=True)
    out = conv(x_parent, x_child, layout)
    expected = torch.tanh(conv.lin_update(torch.cat([torch.zeros(2 * D), x_parent[2]])))
    torch.testing.assert_close(out[2], expected)
    out.sum().backward()
    assert torch.isfinite(x_parent.grad).all() and torch.isfinite(x_child.grad).all()


def test_parent_output_ignores_other_parents_children() -> None:
    torch.manual_seed(0)
    layout, n_child = _random_relation(4)
    conv = DGRNConv(D, max_order=5).eval()
    x_parent = torch.randn(layout.num_parents, D)
    x_child = torch.randn(n_child, D)
    changed = x_child.clone()
    changed[layout.index != 0] += 1.0
    with torch.no_grad():
        a, b = conv(x_parent, x_child, layout), conv(x_parent, changed, layout)
    torch.testing.assert_close(a[0], b[0])
    assert not torch.allclose(a[1], b[1])


def test_edge_type_and_order_change_the_output() -> None:
    """The type and the order embeddings are each wired in: changing either alone alters the parents
    whose children changed, and only those."""
    torch.manual_seed(0)
    layout, n_child = _random_relation(5)
    conv = DGRNConv(D, max_order=5).eval()
    x_parent, x_child = torch.randn(layout.num_parents, D), torch.randn(n_child, D)
    retyped = ChildLayout.from_edges(
        layout.index, layout.order, (layout.edge_type + 1) % 3, layout.num_parents
    )
    # swap orders 1 and 2: the same children and the same most recent one (order 0, the short-term
    # query), so only the order embeddings p^K / p^V can tell the two apart
    swapped = layout.order.clone()
    swapped[layout.order == 1], swapped[layout.order == 2] = 2, 1
    moved = torch.zeros(layout.num_parents, dtype=torch.bool)  # parents with an order-1 child
    moved[layout.index[layout.order == 1]] = True
    assert 0 < int(moved.sum()) < layout.num_parents
    reordered = ChildLayout.from_edges(layout.index, swapped, layout.edge_type, layout.num_parents)
    with torch.no_grad():
        base = conv(x_parent, x_child, layout)
        by_type = conv(x_parent, x_child, retyped)
        by_order = conv(x_parent, x_child, reordered)
    has_children = torch.bincount(layout.index, minlength=layout.num_parents) > 0
    assert not torch.isclose(base, by_type).all(-1)[has_children].any()
    torch.testing.assert_close(base[~has_children], by_type[~has_children])
    assert not torch.isclose(base, by_order).all(-1)[moved].any()
    torch.testing.assert_close(base[~moved], by_order[~moved])


def test_layout_rejects_two_children_in_one_slot() -> None:
    with pytest.raises(ValueError, match="same order"):
        ChildLayout.from_edges(torch.tensor([0, 0]), torch.tensor([0, 0]), torch.tensor([0, 1]), 1)


def test_layout_last_child_and_mask() -> None:
    layout = ChildLayout.from_edges(
        torch.tensor([0, 0, 2]), torch.tensor([0, 1, 0]), torch.tensor([2, 1, 0]), 3
    )
    assert layout.last.tolist() == [0, -1, 2]
    assert layout.mask.tolist() == [[True, True], [False, False], [True, False]]
    assert layout.type_dense[0].tolist() == [2, 1]
