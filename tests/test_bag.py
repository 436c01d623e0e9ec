"""``bag_mean``: the sparse-product mean DGSR uses for context windows equals ``embedding_bag``."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gnn_recsys.models.bag import bag_mean


@pytest.mark.parametrize("width", [1, 4, 7])
def test_bag_mean_equals_embedding_bag_forward_and_backward(width: int) -> None:
    generator = torch.Generator().manual_seed(width)
    rows, table_rows, pad = 300, 40, 40
    context = torch.randint(0, table_rows, (rows, width), generator=generator)
    context[torch.rand(rows, width, generator=generator) < 0.4] = pad
    context[:5] = pad  # rows of padding only: zero
    context[5] = 3  # one index several times in a row
    table = torch.randn(table_rows + 1, 16, generator=generator).requires_grad_()
    grad = torch.randn(rows, 16, generator=generator)

    out = bag_mean(context, table, pad)
    (d_table,) = torch.autograd.grad(out, table, grad)
    expected = F.embedding_bag(context, table, mode="mean", padding_idx=pad)
    (d_expected,) = torch.autograd.grad(expected, table, grad)

    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(d_table, d_expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(out[:5], torch.zeros(5, 16))
    torch.testing.assert_close(out[5], table[3])
    assert torch.equal(d_table[pad], torch.zeros(16))  # padding never receives gradient


def test_bag_mean_is_deterministic_and_handles_empty_windows() -> None:
    context = torch.tensor([[0, 2], [1, 1], [2, 0]])
    table = torch.arange(6, dtype=torch.float32).view(3, 2).requires_grad_()
    first = torch.autograd.grad(bag_mean(context, table, 2).sum(), table)[0]
    assert torch.equal(first, torch.autograd.grad(bag_mean(context, table, 2).sum(), table)[0])
    assert torch.equal(first, torch.tensor([[2.0, 2.0], [1.0, 1.0], [0.0, 0.0]]))
    empty = bag_mean(torch.zeros(4, 0, dtype=torch.int64), table, 2)
    assert empty.shape == (4, 2) and not empty.any()
