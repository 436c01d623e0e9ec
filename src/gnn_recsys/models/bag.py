r"""Mean of table rows over padded index lists, with a fast CPU backward.

``bag_mean(context, table, pad)[r] = mean_{j : context[r, j] != pad} table[context[r, j]]`` (zero for a
row of padding only) is ``F.embedding_bag(..., mode="mean", padding_idx=pad)``. DGSR calls it for
every neighbour session's context window (tens of thousands of rows per batch). On CPU, PyTorch's
dense backward of ``embedding_bag`` sorts and accumulates index by index and was the single largest
kernel of a training step after the attention's ``bmm``; written as a sparse product instead,

    out = M @ table,   M[r, i] = 1 / |row r| for each (non-padding) index i in row r   ([R, T] CSR)
    d table = M^T @ d out                                                               ([T, R] CSR)

both directions are one MKL sparse-dense product over ``E`` non-zeros (``O(E d)``). Off CPU (CUDA's
``embedding_bag`` is fast) and for other dtypes it falls back to ``embedding_bag``.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor


def _csr(crow: Tensor, col: Tensor, value: Tensor, shape: tuple[int, int]) -> Tensor:
    with warnings.catch_warnings():  # "Sparse CSR tensor support is in beta": the product used here is not
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, col, value, shape, check_invariants=False)


class _CSRBagMean(torch.autograd.Function):
    """``M @ table`` with ``M`` given by its CSR arrays; backward ``M^T @ grad`` (``M`` is constant)."""

    @staticmethod
    def forward(ctx: Any, crow: Tensor, col: Tensor, value: Tensor, table: Tensor) -> Tensor:  # type: ignore[override]
        num_rows = crow.shape[0] - 1
        ctx.save_for_backward(crow, col, value)
        ctx.table_rows = table.shape[0]
        return _csr(crow, col, value, (num_rows, table.shape[0])) @ table

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        crow, col, value = ctx.saved_tensors
        num_rows, table_rows = crow.shape[0] - 1, ctx.table_rows
        # the transpose in CSR form: entries sorted by column (stable: the same order every run)
        order = torch.argsort(col, stable=True)
        row = torch.repeat_interleave(torch.arange(num_rows, device=col.device), crow.diff())
        crow_t = torch.zeros(table_rows + 1, dtype=crow.dtype, device=crow.device)
        torch.cumsum(torch.bincount(col, minlength=table_rows), 0, out=crow_t[1:])
        d_table = _csr(crow_t, row[order], value[order], (table_rows, num_rows)) @ grad.contiguous()
        return None, None, None, d_table


def bag_mean(context: Tensor, table: Tensor, pad: int) -> Tensor:
    """``[R, C]`` indices into ``table`` (``[T, d]``; ``pad`` = padding) -> ``[R, d]`` row means."""
    if context.shape[1] == 0:
        return table.new_zeros(context.shape[0], table.shape[1])
    if table.device.type != "cpu" or table.dtype != torch.float32:
        return F.embedding_bag(context, table, mode="mean", padding_idx=pad)
    valid = context != pad
    count = valid.sum(1)
    crow = torch.zeros(context.shape[0] + 1, dtype=torch.int64)
    torch.cumsum(count, 0, out=crow[1:])
    value = (1.0 / count.clamp(min=1).to(table.dtype)).repeat_interleave(count)
    return _CSRBagMean.apply(crow, context[valid], value, table)
