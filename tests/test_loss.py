"""Sampled softmax with log-Q correction against the full softmax it approximates."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gnn_recsys.models.loss import (
    FullSoftmaxLoss,
    LossConfig,
    SampledSoftmaxLoss,
    full_softmax_loss,
    make_loss,
    sampled_softmax_loss,
)


def _data(n_items: int = 30, batch: int = 7, dim: int = 5, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    query = torch.randn(batch, dim, generator=g)
    items = torch.randn(n_items, dim, generator=g)
    target = torch.randint(0, n_items, (batch,), generator=g)
    return query, target, items


def test_every_item_once_without_correction_is_the_full_softmax() -> None:
    query, target, items = _data()
    candidates = torch.randperm(30)  # order of the candidates must not matter
    loss = sampled_softmax_loss(query, target, items, candidates, torch.zeros(30))
    assert torch.allclose(loss, F.cross_entropy(query @ items.T, target))
    assert torch.allclose(full_softmax_loss(query, target, items), F.cross_entropy(query @ items.T, target))


def test_in_batch_plus_all_items_deduplicates_to_the_full_softmax() -> None:
    """With ``Q = 1`` for every item (S huge) the corrected sampled loss *is* the full softmax."""
    query, target, items = _data(n_items=12, batch=9)
    counts = np.ones(12)
    loss_fn = SampledSoftmaxLoss(counts, num_negatives=20_000, uniform_mix=1.0)
    torch.testing.assert_close(loss_fn.log_q(torch.arange(12), 9), torch.zeros(12))
    loss = loss_fn(query, target, items, torch.Generator().manual_seed(0))
    assert torch.allclose(loss, F.cross_entropy(query @ items.T, target), atol=1e-6)


def test_accidental_hits_are_masked() -> None:
    query, target, items = _data()
    others = torch.tensor([i for i in range(30) if i not in set(target.tolist())])
    log_q = torch.linspace(-3, -1, 30)
    with_hits = sampled_softmax_loss(
        query, target, items, torch.arange(30), log_q, target_log_q=torch.zeros(7)
    )
    # Reference: per row, the positive against all candidates except the row's own target.
    rows = []
    for b in range(7):
        keep = torch.arange(30) != target[b]
        logits = torch.cat([(query[b] @ items[target[b]]).view(1), query[b] @ items[keep].T - log_q[keep]])
        rows.append(-torch.log_softmax(logits, 0)[0])
    assert torch.allclose(with_hits, torch.stack(rows).mean(), atol=1e-6)
    assert len(others) < 30  # the batch does hit some candidates, so masking was exercised


def _proposal(counts: np.ndarray, alpha: float, uniform_mix: float) -> np.ndarray:
    """The shared-negative distribution as documented: popularity^alpha mixed with the uniform one."""
    weight = counts**alpha
    return (1 - uniform_mix) * weight / weight.sum() + uniform_mix / len(counts)


@pytest.mark.parametrize("in_batch", [True, False])
def test_log_q_is_the_empirical_inclusion_frequency_of_a_rows_negatives(in_batch: bool) -> None:
    """Simulated batches: the other rows' targets drawn from the target frequencies, the shared
    negatives drawn by the loss's own sampler; how often each item is among a row's negatives."""
    counts = np.array([50.0, 10.0, 1.0, 0.0, 39.0])
    batch, draws, num_negatives = 4, 40_000, 6
    loss_fn = SampledSoftmaxLoss(
        counts, num_negatives=num_negatives, alpha=0.75, uniform_mix=0.2, in_batch=in_batch
    )
    # one big draw of draws x S negatives = draws independent draws of S (each is S i.i.d. draws)
    many = SampledSoftmaxLoss(counts, num_negatives=num_negatives * draws, alpha=0.75, uniform_mix=0.2)
    negatives = many.sample_negatives(torch.Generator().manual_seed(1)).numpy().reshape(draws, num_negatives)
    others = np.random.default_rng(2).choice(5, size=(draws, batch - 1), p=counts / counts.sum())
    pool = np.concatenate([others, negatives], axis=1) if in_batch else negatives
    freq = np.array([(pool == i).any(axis=1).mean() for i in range(5)])
    q = loss_fn.log_q(torch.arange(5), batch_size=batch).double().exp().numpy()
    stderr = np.sqrt(q * (1 - q) / draws)
    assert np.all(np.abs(freq - q) <= 4 * stderr + 1e-12), (freq, q)
    assert freq[3] > 0  # a zero-count item: only through the uniform mix of the shared draws


def _row0_loss(loss_fn, query, target, items, candidates, *, batch_size):
    return sampled_softmax_loss(
        query[:1], target[:1], items, candidates, loss_fn.log_q(candidates, batch_size)
    ).double()


@pytest.mark.parametrize("in_batch", [True, False])
def test_sampled_loss_is_an_exact_horvitz_thompson_estimate_of_the_full_softmax(in_batch: bool) -> None:
    """Non-uniform Q, exact expectation by enumerating every draw: ``exp(loss)`` of a row is its
    estimated partition function over ``exp(s_target)``, so ``E[exp(sampled loss)] = exp(full loss)``."""
    counts = np.array([12.0, 6.0, 2.0, 1.0, 1.0])
    alpha, mix, batch, num_negatives = 0.75, 0.2, 3, 2
    loss_fn = SampledSoftmaxLoss(
        counts, num_negatives=num_negatives, alpha=alpha, uniform_mix=mix, in_batch=in_batch
    )
    query, target, items = _data(n_items=5, batch=1, dim=4, seed=3)
    p, q = counts / counts.sum(), _proposal(counts, alpha, mix)
    others = batch - 1 if in_batch else 0
    expectation = 0.0
    for draw in itertools.product(range(5), repeat=others + num_negatives):
        probability = np.prod(p[list(draw[:others])]) * np.prod(q[list(draw[others:])])
        pool = ([int(target[0]), *draw[:others]] if in_batch else []) + list(draw[others:])
        candidates = torch.unique(torch.tensor(pool))
        expectation += probability * float(
            _row0_loss(loss_fn, query, target, items, candidates, batch_size=batch).exp()
        )
    full = float(F.cross_entropy(query @ items.T, target).double().exp())
    assert expectation == pytest.approx(full, rel=1e-5)
    # the exact check has teeth: counting the row's own target among the in-batch draws (Q with B
    # instead of B - 1 draws) would bias the estimate by ~4% here
    if in_batch:
        biased = 0.0
        for draw in itertools.product(range(5), repeat=others + num_negatives):
            probability = np.prod(p[list(draw[:others])]) * np.prod(q[list(draw[others:])])
            candidates = torch.unique(torch.tensor([int(target[0]), *draw]))
            biased += probability * float(
                _row0_loss(loss_fn, query, target, items, candidates, batch_size=batch + 1).exp()
            )
        assert abs(biased - full) > 0.02 * full


def test_loss_module_estimates_the_full_softmax_end_to_end() -> None:
    """Monte Carlo through ``forward`` (its own candidate set and negative draws) with random batches:
    the mean of ``exp(row loss)`` matches ``exp(full loss)`` within 4 standard errors."""
    counts = np.array([30.0, 12.0, 8.0, 4.0, 2.0, 1.0, 1.0, 0.0])
    loss_fn = SampledSoftmaxLoss(counts, num_negatives=3, alpha=0.75, uniform_mix=0.2)
    query, target, items = _data(n_items=8, batch=1, dim=4, seed=4)
    full = float(F.cross_entropy(query @ items.T, target).double().exp())
    rng, g, batch = np.random.default_rng(5), torch.Generator().manual_seed(6), 4
    weight = torch.tensor([1.0, 0.0, 0.0, 0.0])  # the loss of row 0 alone
    values = []
    for _ in range(3_000):
        others = torch.as_tensor(rng.choice(8, batch - 1, p=counts / counts.sum()))
        queries = torch.cat([query, torch.zeros(batch - 1, 4)])
        loss = loss_fn(queries, torch.cat([target, others]), items, g, weight=weight)
        values.append(float(loss.double().exp()))
    values = np.array(values)
    stderr = values.std(ddof=1) / np.sqrt(len(values))
    assert abs(values.mean() - full) < 4 * stderr


def test_shared_negatives_follow_the_proposal_and_are_reproducible() -> None:
    counts = np.array([100.0, 1.0, 30.0, 0.0, 5.0, 60.0])
    loss_fn = SampledSoftmaxLoss(counts, num_negatives=200_000, alpha=0.75, uniform_mix=0.1)
    draws = loss_fn.sample_negatives(torch.Generator().manual_seed(3))
    again = loss_fn.sample_negatives(torch.Generator().manual_seed(3))
    assert torch.equal(draws, again)
    freq = np.bincount(draws.numpy(), minlength=6) / len(draws)
    np.testing.assert_allclose(freq, loss_fn.proposal.numpy(), atol=4e-3)
    assert freq[3] > 0  # zero-count items are reachable through the uniform mix


@pytest.mark.parametrize("in_batch", [True, False])
def test_correction_reduces_the_bias_of_the_sampled_loss(in_batch: bool) -> None:
    """Averaged over draws, the log-Q corrected loss is closer to the full softmax loss than without;
    with in-batch negatives the batch's targets follow the target frequencies, as in training."""
    n, batch = 2_000, 64
    rng = np.random.default_rng(0)
    counts = rng.zipf(1.5, n).astype(float).clip(max=10_000)
    query, _, items = _data(n_items=n, batch=batch, dim=16, seed=1)
    items = items * 0.5
    loss_fn = SampledSoftmaxLoss(counts, num_negatives=200, in_batch=in_batch)
    g = torch.Generator().manual_seed(0)
    corrected, raw, full = [], [], []
    for _ in range(20):
        target = torch.as_tensor(rng.choice(n, batch, p=counts / counts.sum()))
        full.append(float(F.cross_entropy(query @ items.T, target)))
        parts = [target] if in_batch else []
        candidates = torch.unique(torch.cat([*parts, loss_fn.sample_negatives(g)]))
        log_q = loss_fn.log_q(candidates, batch)
        corrected.append(float(sampled_softmax_loss(query, target, items, candidates, log_q)))
        raw.append(
            float(sampled_softmax_loss(query, target, items, candidates, torch.zeros(len(candidates))))
        )
    bias, raw_bias = abs(np.mean(corrected) - np.mean(full)), abs(np.mean(raw) - np.mean(full))
    assert bias < 0.5 * raw_bias


def test_gradients_reach_query_and_item_embeddings() -> None:
    query, target, items = _data()
    query.requires_grad_(True)
    items.requires_grad_(True)
    loss = SampledSoftmaxLoss(np.arange(1, 31), num_negatives=8)(
        query, target, items, torch.Generator().manual_seed(0)
    )
    loss.backward()
    assert torch.isfinite(query.grad).all() and query.grad.abs().sum() > 0
    assert items.grad[target].abs().sum() > 0


def test_sparse_gradient_equals_the_dense_one() -> None:
    query, target, items = _data()
    grads = []
    for sparse in (False, True):
        table = items.clone().requires_grad_(True)
        loss_fn = SampledSoftmaxLoss(np.arange(1, 31), num_negatives=8, sparse=sparse)
        loss_fn(query, target, table, torch.Generator().manual_seed(0)).backward()
        grads.append(table.grad)
    assert not grads[0].is_sparse and grads[1].is_sparse
    torch.testing.assert_close(grads[1].to_dense(), grads[0])


def test_make_loss_and_bad_arguments() -> None:
    assert isinstance(make_loss(LossConfig(kind="full"), np.ones(3)), FullSoftmaxLoss)
    assert isinstance(make_loss(LossConfig(kind="sampled", num_negatives=2), np.ones(3)), SampledSoftmaxLoss)
    # auto: the exact softmax up to full_max_items items, the sampled one above
    auto = LossConfig(kind="auto", full_max_items=3, num_negatives=2)
    assert isinstance(make_loss(auto, np.ones(3)), FullSoftmaxLoss)
    assert isinstance(make_loss(auto, np.ones(4)), SampledSoftmaxLoss)
    with pytest.raises(ValueError, match="sparse_embedding needs the sampled softmax"):
        make_loss(auto, np.ones(3), sparse=True)
    with pytest.raises(ValueError, match="loss.kind must be"):
        LossConfig(kind="hinge")
    with pytest.raises(ValueError, match="non-negative"):
        SampledSoftmaxLoss(np.array([1.0, -1.0]))
    with pytest.raises(ValueError, match="in-batch"):
        SampledSoftmaxLoss(np.ones(3), num_negatives=0, in_batch=False)


def test_history_bonus_sampled_over_every_item_equals_the_full_softmax_with_bonus() -> None:
    """History items enter the softmax exactly once with their bonus, whether or not they were sampled."""
    torch.manual_seed(3)
    n, d = 40, 8
    query, items = torch.randn(5, d), torch.randn(n, d)
    target = torch.tensor([3, 17, 17, 0, 39])
    history_items = torch.tensor([[3, 5, -1], [1, 2, 17], [-1, -1, -1], [39, 0, 12], [7, -1, -1]])
    bonus = torch.randn(5, 3)
    history = (history_items, bonus)
    want = full_softmax_loss(query, target, items, history)
    every_item = torch.arange(n)
    got = sampled_softmax_loss(query, target, items, every_item, torch.zeros(n), history=history)
    torch.testing.assert_close(got, want)
    # the bonus matters: without it the loss differs
    assert not torch.isclose(want, full_softmax_loss(query, target, items))
    # by hand for row 0: the target (3) has bonus[0, 0], item 5 bonus[0, 1], every other item none
    logits = query[0] @ items.T
    logits[3] += bonus[0, 0]
    logits[5] += bonus[0, 1]
    row0 = F.cross_entropy(logits.unsqueeze(0), target[:1])
    torch.testing.assert_close(
        full_softmax_loss(query[:1], target[:1], items, (history_items[:1], bonus[:1])), row0
    )


def test_repeated_candidates_count_once() -> None:
    """Candidates are sorted but not de-duplicated (a fixed shape, no host sync): repeats must not count."""
    g = torch.Generator().manual_seed(3)
    query, items = torch.randn(5, 4, generator=g), torch.randn(30, 4, generator=g)
    target = torch.tensor([1, 2, 2, 7, 9])
    distinct = torch.tensor([0, 2, 3, 7, 11, 20])
    repeated = torch.tensor([0, 0, 2, 3, 3, 3, 7, 11, 20, 20])
    log_q = -torch.rand(30, generator=g)
    history = (torch.tensor([[3, -1], [0, 20], [-1, -1], [7, 11], [20, 20]]), torch.rand(5, 2, generator=g))
    want = sampled_softmax_loss(query, target, items, distinct, log_q[distinct], history=history)
    got = sampled_softmax_loss(query, target, items, repeated, log_q[repeated], history=history)
    torch.testing.assert_close(got, want)
