"""The chunk-maxima top-K against torch.topk."""

from __future__ import annotations

import pytest
import torch

from gnn_recsys.models.topk import topk_blocked, topk_chunked


@pytest.mark.parametrize("interleaved", [False, True])
@pytest.mark.parametrize(
    ("num_cols", "k", "chunk"), [(4096, 20, 32), (5000, 20, 32), (1000, 7, 16), (333, 3, 8)]
)
def test_topk_chunked_equals_topk(num_cols: int, k: int, chunk: int, interleaved: bool) -> None:
    """Whole groups only, a ragged tail, a tail smaller than k: same values and columns as torch.topk,
    with either grouping of the columns."""
    g = torch.Generator().manual_seed(num_cols)
    scores = torch.randn(64, num_cols, generator=g)
    groups = num_cols // chunk
    # crowd one row's best columns into one group of adjacent columns, another's into one
    # interleaved group (columns 5, 5 + G, 5 + 2G, ...) and a third's into the tail
    scores[0, 64 : 64 + chunk] += 10.0
    scores[1, 5 : groups * chunk : groups] += 10.0
    scores[2, num_cols - (num_cols % chunk or chunk) :] += 10.0
    value, index = topk_chunked(scores, k, chunk, interleaved=interleaved)
    want_value, want_index = torch.topk(scores, k, dim=1)
    torch.testing.assert_close(value, want_value, rtol=0, atol=0)
    assert torch.equal(index, want_index)
    assert torch.equal(torch.gather(scores, 1, index), value)


def test_topk_chunked_with_masked_columns_and_few_chunks() -> None:
    scores = torch.randn(5, 640, generator=torch.Generator().manual_seed(1))
    scores[:, ::2] = float("-inf")  # e.g. items masked out: half the catalogue can never be picked
    for interleaved in (False, True):
        value, index = topk_chunked(scores, 20, 16, interleaved=interleaved)
        want_value, want_index = torch.topk(scores, 20, dim=1)
        assert torch.equal(value, want_value) and torch.equal(index, want_index)
        assert (index % 2 == 1).all()
    # fewer than 2k chunks: plain torch.topk
    few = topk_chunked(scores[:, :64], 20, 16)
    assert torch.equal(few[1], torch.topk(scores[:, :64], 20, dim=1).indices)


def test_topk_blocked_takes_the_chunked_path_and_stays_exact() -> None:
    g = torch.Generator().manual_seed(2)
    query, items = torch.randn(33, 8, generator=g), torch.randn(10_007, 8, generator=g)
    index, score = topk_blocked(query, items, k=10, block_size=4096)  # 128 chunks a block, a ragged last
    want_score, want_index = torch.topk(query @ items.T, 10, dim=1)
    torch.testing.assert_close(score, want_score)
    assert torch.equal(index, want_index)


def test_topk_blocked_scores_in_float32_under_autocast() -> None:
    """A bf16 product would round scores to 8 bits of mantissa and reorder close items."""
    g = torch.Generator().manual_seed(3)
    query, items = torch.randn(16, 64, generator=g), torch.randn(5000, 64, generator=g)
    want_score, want_index = torch.topk(query @ items.T, 20, dim=1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert (query @ items.T).dtype == torch.bfloat16  # autocast is on for a plain product
        index, score = topk_blocked(query, items, k=20, block_size=2048)
    assert score.dtype == torch.float32
    torch.testing.assert_close(score, want_score)
    assert torch.equal(index, want_index)
