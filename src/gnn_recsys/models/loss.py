r"""Training losses for next-item prediction over a large catalogue.

A full softmax over OTTO's 1.86M items costs ``B x 1.86M x d`` per step, so the default is a
*sampled softmax with log-Q correction* (Jean et al. 2015; Yi et al. 2019): the positive competes with
a small candidate set ``C`` -- the batch's own targets (in-batch negatives) plus ``S`` shared
negatives drawn with replacement from ``q = (1 - m) pop^alpha / Z + m / N`` (popularity flattened by
``alpha``, mixed with uniform weight ``m`` so that every item can be drawn). Because ``C`` favours
popular items, each logit is corrected by ``- log Q(i)`` where ``Q(i)`` is the probability that item
``i`` is in ``C``::

    Q(i) = 1 - (1 - p_i)^B (1 - q_i)^S      (p = target frequency: in-batch draws, q: shared draws)

Candidates are de-duplicated (``Q`` is an inclusion probability, so each item counts once), and an
accidental hit -- a candidate equal to the row's own target -- is masked out so the positive is never
also a negative. The positive itself is always present, so its logit is *not* corrected: then
``exp(s_t) + sum_{i in C, i != t} exp(s_i) / Q(i)`` is the Horvitz-Thompson estimate of the full
partition function, and the loss estimates the full softmax loss (TensorFlow's variant also
subtracts ``log Q(t)`` from the positive; ``sampled_softmax_loss(target_log_q=...)`` allows it). With every item in ``C`` exactly once and ``log Q = 0`` the loss is exactly the full
softmax cross entropy, which the tests check.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn


def sampled_softmax_loss(
    query: Tensor,
    target: Tensor,
    item_embedding: Tensor,
    candidates: Tensor,
    candidate_log_q: Tensor,
    *,
    target_log_q: Tensor | None = None,
) -> Tensor:
    """Mean cross entropy of each target against de-duplicated ``candidates`` (logits ``- log Q``).

    Shapes: ``query [B, d]``, ``target [B]``, ``item_embedding [N, d]``, ``candidates [C]`` (distinct
    item indices), ``candidate_log_q [C]``, ``target_log_q [B]`` (defaults to 0).
    """
    positive = (query * item_embedding[target].to(query.dtype)).sum(-1).float()
    if target_log_q is not None:
        positive = positive - target_log_q
    negative = (query @ item_embedding[candidates].to(query.dtype).T).float() - candidate_log_q
    negative = negative.masked_fill(candidates.unsqueeze(0) == target.unsqueeze(1), float("-inf"))
    logits = torch.cat([positive.unsqueeze(1), negative], dim=1)
    return F.cross_entropy(logits, torch.zeros_like(target))


def full_softmax_loss(query: Tensor, target: Tensor, item_embedding: Tensor) -> Tensor:
    """Cross entropy over the whole catalogue (small catalogues, or as a reference)."""
    return F.cross_entropy((query @ item_embedding.to(query.dtype).T).float(), target)


class SampledSoftmaxLoss(nn.Module):
    """Sampled softmax with log-Q correction (see module docstring); a loss module holding the proposal.

    Args:
        item_counts: ``[N]`` training-target count per item: gives the in-batch distribution ``p`` and
            the popularity of the shared proposal.
        num_negatives: ``S`` shared negatives per step (0 = in-batch only).
        alpha: popularity exponent of the shared proposal.
        uniform_mix: weight ``m`` of the uniform distribution in the shared proposal.
        in_batch: use the batch's targets as negatives.
    """

    def __init__(
        self,
        item_counts: np.ndarray | Tensor,
        num_negatives: int = 2048,
        alpha: float = 0.75,
        uniform_mix: float = 0.1,
        in_batch: bool = True,
    ) -> None:
        super().__init__()
        counts = torch.as_tensor(np.asarray(item_counts), dtype=torch.float64)
        if counts.ndim != 1 or counts.numel() == 0 or bool((counts < 0).any()):
            raise ValueError("item_counts must be a non-empty 1-d array of non-negative counts")
        if not 0.0 <= uniform_mix <= 1.0:
            raise ValueError("uniform_mix must be in [0, 1]")
        if not in_batch and num_negatives <= 0:
            raise ValueError("need in-batch negatives or num_negatives > 0")
        n = counts.numel()
        total = counts.sum()
        in_batch_prob = counts / total if total > 0 else torch.full_like(counts, 1.0 / n)
        weight = counts.pow(alpha)
        popular = weight / weight.sum() if weight.sum() > 0 else torch.full_like(counts, 1.0 / n)
        proposal = (1.0 - uniform_mix) * popular + uniform_mix / n
        self.num_negatives = num_negatives
        self.in_batch = in_batch
        self.register_buffer("in_batch_prob", in_batch_prob, persistent=False)
        self.register_buffer("proposal", proposal, persistent=False)
        self.register_buffer("proposal_cdf", torch.cumsum(proposal, 0), persistent=False)

    def sample_negatives(self, generator: torch.Generator | None = None) -> Tensor:
        """``S`` item indices drawn with replacement from the proposal (inverse CDF, ``O(S log N)``)."""
        cdf = self.proposal_cdf
        device = generator.device if generator is not None else cdf.device
        u = torch.rand(self.num_negatives, generator=generator, dtype=torch.float64, device=device).to(
            cdf.device
        )
        return torch.searchsorted(cdf, u * cdf[-1], right=True).clamp_(max=cdf.numel() - 1)

    def log_q(self, items: Tensor, batch_size: int) -> Tensor:
        """Log inclusion probability of ``items`` in a candidate set of ``batch_size`` targets + ``S`` draws."""
        log_miss = torch.zeros(items.shape, dtype=torch.float64, device=items.device)
        if self.in_batch:
            log_miss += batch_size * torch.log1p(-self.in_batch_prob[items].clamp(max=1.0 - 1e-12))
        if self.num_negatives > 0:
            log_miss += self.num_negatives * torch.log1p(-self.proposal[items].clamp(max=1.0 - 1e-12))
        return torch.log((-torch.expm1(log_miss)).clamp(min=1e-300)).float()

    def forward(
        self, query: Tensor, target: Tensor, item_embedding: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        """Loss of ``query [B, d]`` for ``target [B]``; ``generator`` makes the negative draw reproducible."""
        parts = [target] if self.in_batch else []
        if self.num_negatives > 0:
            parts.append(self.sample_negatives(generator).to(target.device))
        candidates = torch.unique(torch.cat(parts))
        batch_size = int(target.shape[0])
        return sampled_softmax_loss(
            query,
            target,
            item_embedding,
            candidates,
            self.log_q(candidates, batch_size),
        )


class FullSoftmaxLoss(nn.Module):
    """Cross entropy over the full catalogue; same call signature as :class:`SampledSoftmaxLoss`."""

    def forward(
        self, query: Tensor, target: Tensor, item_embedding: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        return full_softmax_loss(query, target, item_embedding)


def make_loss(
    kind: str,
    item_counts: np.ndarray,
    *,
    num_negatives: int = 2048,
    alpha: float = 0.75,
    uniform_mix: float = 0.1,
    in_batch: bool = True,
) -> nn.Module:
    """``"sampled"`` -> :class:`SampledSoftmaxLoss`, ``"full"`` -> :class:`FullSoftmaxLoss`."""
    if kind == "sampled":
        return SampledSoftmaxLoss(item_counts, num_negatives, alpha, uniform_mix, in_batch)
    if kind == "full":
        return FullSoftmaxLoss()
    raise ValueError(f"loss must be 'sampled' or 'full', got {kind!r}")
