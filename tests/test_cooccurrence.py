"""The co-occurrence start of DGSR's item table: counts, PPMI, the embedding, and that training uses it."""

from __future__ import annotations

from collections import Counter

import numpy as np
import polars as pl
import pytest
import torch

from gnn_recsys.graph.cooccurrence import cooccurrence_embedding, cooccurrence_pairs, positive_pmi
from gnn_recsys.graph.sampler import training_samples
from gnn_recsys.graph.temporal_graph import build_temporal_graph
from gnn_recsys.loader import SampleSet
from gnn_recsys.models.dgsr import DGSR
from gnn_recsys.training import FitConfig, train_dgsr


def _events(sessions: list[list[int]]) -> pl.DataFrame:
    rows = [(s, aid, 1_000 * t) for s, items in enumerate(sessions) for t, aid in enumerate(items)]
    return pl.DataFrame(
        [(s, a, ts, 0) for s, a, ts in rows],
        schema={"session": pl.Int32, "aid": pl.Int32, "ts": pl.Int64, "type": pl.Int8},
        orient="row",
    )


def _pairs_by_hand(session: np.ndarray, item: np.ndarray, window: int) -> Counter:
    counts: Counter = Counter()
    for i in range(len(item)):
        for j in range(len(item)):
            if i != j and abs(i - j) <= window and session[i] == session[j] and item[i] != item[j]:
                counts[(int(item[i]), int(item[j]))] += 1
    return counts


@pytest.mark.parametrize("window", [1, 2, 4])
def test_pairs_count_neighbours_within_the_window_inside_a_session(window: int) -> None:
    rng = np.random.default_rng(window)
    session = np.sort(rng.integers(0, 12, size=90))
    item = rng.integers(0, 9, size=90)  # repeats of an item next to itself are frequent
    row, col, count = cooccurrence_pairs(session, item, 9, window)
    assert dict(zip(zip(row.tolist(), col.tolist(), strict=True), count.tolist(), strict=True)) == (
        _pairs_by_hand(session, item, window)
    )
    assert np.all(np.diff(row * 9 + col) > 0)  # sorted, each pair once


def test_pairs_never_cross_sessions_nor_pair_an_item_with_itself() -> None:
    row, col, count = cooccurrence_pairs(np.array([0, 0, 1, 1, 1]), np.array([3, 4, 4, 4, 5]), 6, 2)
    assert sorted(zip(row.tolist(), col.tolist(), count.tolist(), strict=True)) == [
        (3, 4, 1),
        (4, 3, 1),
        (4, 5, 2),  # both events of item 4 in session 1 are within 2 of item 5
        (5, 4, 2),
    ]
    with pytest.raises(ValueError, match="window"):
        cooccurrence_pairs(np.array([0]), np.array([0]), 1, 0)


def test_positive_pmi_matches_its_definition() -> None:
    row, col, count = np.array([0, 0, 1, 2]), np.array([1, 2, 0, 0]), np.array([3, 1, 3, 1])
    total, row_sum, col_sum = 8.0, {0: 4, 1: 3, 2: 1}, {0: 4, 1: 3, 2: 1}
    expected = [
        max(0.0, np.log(c * total / (row_sum[r] * col_sum[k])))
        for r, k, c in zip(row, col, count, strict=True)
    ]
    np.testing.assert_allclose(positive_pmi(row, col, count, 3), expected)
    assert (positive_pmi(row, col, count, 3) >= 0).all()


def test_embedding_puts_co_visited_items_together_and_lonely_items_at_zero() -> None:
    """Two groups of items that never share a session: rows within a group point the same way, rows
    across groups are orthogonal, an item seen only alone keeps a zero row."""
    rng = np.random.default_rng(0)
    group_a, group_b = [0, 1, 2, 3], [4, 5, 6, 7]
    sessions = [list(rng.choice(group, size=6)) for group in (group_a, group_b) for _ in range(40)]
    sessions.append([8])  # item 8: one event, no neighbour
    graph = build_temporal_graph(_events(sessions), item_aids=np.arange(10))  # item index = aid; 9: no event
    torch.manual_seed(0)
    rows = cooccurrence_embedding(graph, dim=2, window=2, scale=0.1)  # one direction per group
    assert rows.shape == (10, 2) and rows.dtype == torch.float32
    assert torch.count_nonzero(rows[8]) == 0 and torch.count_nonzero(rows[9]) == 0
    unit = torch.nn.functional.normalize(rows[group_a + group_b], dim=1)
    cosine = unit @ unit.T
    within = torch.cat([cosine[:4, :4].flatten(), cosine[4:, 4:].flatten()])
    assert within.min() > 0.5 and cosine[:4, 4:].abs().max() < 0.05
    assert rows[group_a + group_b].std().item() == pytest.approx(0.1, rel=1e-4)
    torch.manual_seed(0)
    assert torch.equal(cooccurrence_embedding(graph, dim=2, window=2, scale=0.1), rows)  # seeded


def test_training_starts_from_the_cooccurrence_rows_unless_warm_started() -> None:
    sessions = [[i % 7, (i + 1) % 7, (i + 3) % 7, i % 5 + 7] for i in range(60)]
    graph = build_temporal_graph(_events(sessions))
    samples = SampleSet(*training_samples(graph))
    frozen = FitConfig().with_(
        model={"embedding_dim": 8, "item_max_length": 4, "user_max_length": 3},
        loss={"kind": "full"},
        train={
            "lr": 0.0,
            "max_epochs": 1,
            "warmup_steps": 0,
            "progress": False,
            "seed": 5,
            "item_init": "cooccurrence",
        },
        loader={"num_workers": 0},
    )
    torch.manual_seed(5)  # what train_dgsr does before it builds the model
    DGSR.from_config(graph.num_items, frozen.model)
    expected = cooccurrence_embedding(graph, 8, 2)
    started = train_dgsr(graph, samples, None, frozen).model.item_embedding.weight.detach()
    torch.testing.assert_close(started, expected)
    normal = train_dgsr(graph, samples, None, frozen.with_(train={"item_init": "normal"}))
    assert not torch.allclose(normal.model.item_embedding.weight, expected)
    warm = {k: torch.full_like(v, 0.5) for k, v in normal.model.state_dict().items()}
    kept = train_dgsr(graph, samples, None, frozen, init_state=warm).model.item_embedding.weight
    assert torch.equal(kept.detach(), warm["item_embedding.weight"])
    with pytest.raises(ValueError, match="train.item_init"):
        frozen.with_(train={"item_init": "svd"})


def test_max_events_counts_the_last_sessions_only() -> None:
    sessions = [[0, 1, 2, 0, 1], [3, 4, 5], [3, 5, 6, 5]]
    vocabulary = np.arange(7)
    graph = build_temporal_graph(_events(sessions), item_aids=vocabulary)
    last_two = build_temporal_graph(_events(sessions[1:]), item_aids=vocabulary)
    torch.manual_seed(1)
    capped = cooccurrence_embedding(graph, dim=3, max_events=7)  # 3 + 4 events: the last two sessions
    torch.manual_seed(1)
    torch.testing.assert_close(capped, cooccurrence_embedding(last_two, dim=3))
    assert torch.count_nonzero(capped[:3]) == 0 and torch.count_nonzero(capped[3:]) > 0
    torch.manual_seed(1)
    last = cooccurrence_embedding(graph, dim=3, max_events=6)  # only the last session fits
    assert torch.count_nonzero(last[[0, 1, 2, 4]]) == 0  # item 4: only in the session left out
    assert torch.count_nonzero(last[[3, 5, 6]].abs().sum(dim=1)) == 3
