r"""Training losses for next-item prediction over a large catalogue.

A full softmax over OTTO's 1.86M items costs ``B x 1.86M x d`` per step, so the default is a
*sampled softmax with log-Q correction* (Jean et al. 2015; Yi et al. 2019): the positive competes with
a small candidate set ``C`` -- the batch's own targets (in-batch negatives) plus ``S`` shared
negatives drawn with replacement from ``q = (1 - m) pop^alpha / Z + m / N`` (popularity flattened by
``alpha``, mixed with uniform weight ``m`` so that every item can be drawn). Because ``C`` favours
popular items, each logit is corrected by ``- log Q(i)`` where ``Q(i)`` is the probability that item
``i`` is in ``C`` as a negative of a row::

    Q(i) = 1 - (1 - p_i)^(B-1) (1 - q_i)^S   (p = target frequency: in-batch draws, q: shared draws)

``B - 1``: a row's own target is given (it is the positive), so a negative ``i`` can only come from
the *other* ``B - 1`` targets or the shared draws; with ``B`` the estimate of the partition function
is biased low (the tests compute its exact expectation).

Each candidate item counts once (``Q`` is an inclusion probability; repeats are masked), and an
accidental hit -- a candidate equal to the row's own target -- is masked out so the positive is never
also a negative. The positive itself is always present, so its logit is *not* corrected: then
``exp(s_t) + sum_{i in C, i != t} exp(s_i) / Q(i)`` is the Horvitz-Thompson estimate of the full
partition function, and the loss estimates the full softmax loss (TensorFlow's variant also
subtracts ``log Q(t)`` from the positive; ``sampled_softmax_loss(target_log_q=...)`` allows it). With every item in ``C`` exactly once and ``log Q = 0`` the loss is exactly the full
softmax cross entropy, which the tests check.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gnn_recsys.models.config import from_mapping


def sampled_softmax_loss(
    query: Tensor,
    target: Tensor,
    item_embedding: Tensor,
    candidates: Tensor,
    candidate_log_q: Tensor,
    *,
    target_log_q: Tensor | None = None,
    sparse: bool = False,
    history: tuple[Tensor, Tensor] | None = None,
    weight: Tensor | None = None,
) -> Tensor:
    """Mean cross entropy of each target against the distinct ``candidates`` (logits ``- log Q``).

    Shapes: ``query [B, d]``, ``target [B]``, ``item_embedding [N, d]``, ``candidates [C]`` (sorted item
    indices; a repeated index counts once), ``candidate_log_q [C]``, ``target_log_q [B]`` (defaults to 0). ``sparse``
    makes the gradient of ``item_embedding`` a sparse tensor (for ``SparseAdam``).

    ``history = (items [B, H] (-1 = padding), bonus [B, H])`` adds a per-row score bonus to those items.
    Each row's history items then enter its softmax *exactly* (a sure inclusion, ``log Q = 0``) and are
    masked out of the sampled candidates, so the bonus is trained against its own competition.
    ``weight [B]`` makes it a weighted mean over the rows.
    """
    batch = target.shape[0]
    history_items = [] if history is None else [history[0].clamp(min=0).reshape(-1)]
    # One gather for targets, candidates and history: one dense gradient buffer of catalogue size.
    rows = F.embedding(torch.cat([target, candidates, *history_items]), item_embedding, sparse=sparse)
    rows = rows.to(query.dtype)
    target_emb, candidate_emb = rows[:batch], rows[batch : batch + candidates.shape[0]]
    positive = (query * target_emb).sum(-1).float()
    if target_log_q is not None:
        positive = positive - target_log_q
    negative = (query @ candidate_emb.T).float() - candidate_log_q
    # Accidental hits, and repeats of a candidate drawn twice (candidates are sorted, not de-duplicated:
    # a fixed shape needs no host synchronisation), leave the softmax.
    repeat = torch.zeros_like(candidates, dtype=torch.bool)
    repeat[1:] = candidates[1:] == candidates[:-1]
    negative = negative.masked_fill((candidates.unsqueeze(0) == target.unsqueeze(1)) | repeat, float("-inf"))
    parts = [positive.unsqueeze(1), negative]
    if history is not None:
        items, bonus = history
        valid = items >= 0
        is_target = valid & (items == target.unsqueeze(1))
        positive += (bonus * is_target).sum(1).float()
        # history items among the sampled candidates: counted exactly below instead
        column = torch.searchsorted(candidates, items.clamp(min=0)).clamp(max=candidates.shape[0] - 1)
        sampled = valid & (candidates[column] == items)
        # -inf where sampled, 0 elsewhere (added to column 0: harmless), without a data-dependent shape
        penalty = torch.where(sampled, float("-inf"), 0.0).to(negative.dtype)
        negative = negative + torch.zeros_like(negative).scatter_add(
            1, torch.where(sampled, column, 0), penalty
        )
        history_emb = rows[batch + candidates.shape[0] :].view(*items.shape, -1)
        history_logit = torch.einsum("bd,bhd->bh", query, history_emb).float() + bonus.float()
        parts = [
            positive.unsqueeze(1),
            negative,
            history_logit.masked_fill(~valid | is_target, float("-inf")),
        ]
    logits = torch.cat(parts, dim=1)
    return _mean(F.cross_entropy(logits, torch.zeros_like(target), reduction="none"), weight)


def _mean(losses: Tensor, weight: Tensor | None) -> Tensor:
    if weight is None:
        return losses.mean()
    weight = weight.to(losses.dtype)
    return (losses * weight).sum() / weight.sum().clamp(min=1e-12)


def add_history_bonus(scores: Tensor, history: tuple[Tensor, Tensor] | None, offset: int = 0) -> Tensor:
    """``scores [B, n]`` of items ``offset..offset+n-1`` plus each row's history bonus (out of place)."""
    if history is None:
        return scores
    items, bonus = history
    width = scores.shape[1]
    local = items - offset
    inside = (items >= 0) & (local >= 0) & (local < width)
    row = torch.arange(items.shape[0], device=items.device).unsqueeze(1)
    # Flat positions; entries outside this block add 0 to position 0, so no boolean indexing (no sync).
    flat = torch.where(inside, row * width + local, 0).reshape(-1)
    values = torch.where(inside, bonus.to(scores.dtype), 0.0).reshape(-1)
    return scores.reshape(-1).index_add(0, flat, values).view_as(scores)


def full_softmax_loss(
    query: Tensor,
    target: Tensor,
    item_embedding: Tensor,
    history: tuple[Tensor, Tensor] | None = None,
    weight: Tensor | None = None,
) -> Tensor:
    """Cross entropy over the whole catalogue (small catalogues, or as a reference)."""
    scores = add_history_bonus((query @ item_embedding.to(query.dtype).T).float(), history)
    return _mean(F.cross_entropy(scores, target, reduction="none"), weight)


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
        *,
        alpha: float = 0.75,
        uniform_mix: float = 0.1,
        in_batch: bool = True,
        sparse: bool = False,
    ) -> None:
        super().__init__()
        self.sparse = sparse
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
        """Log probability that ``items`` are among a row's negatives: the batch's ``batch_size - 1``
        other targets or the ``S`` shared draws."""
        log_miss = torch.zeros(items.shape, dtype=torch.float64, device=items.device)
        if self.in_batch:
            other_targets = max(batch_size - 1, 0)
            log_miss += other_targets * torch.log1p(-self.in_batch_prob[items].clamp(max=1.0 - 1e-12))
        if self.num_negatives > 0:
            log_miss += self.num_negatives * torch.log1p(-self.proposal[items].clamp(max=1.0 - 1e-12))
        return torch.log((-torch.expm1(log_miss)).clamp(min=1e-300)).float()

    def forward(
        self,
        query: Tensor,
        target: Tensor,
        item_embedding: Tensor,
        generator: torch.Generator | None = None,
        *,
        history: tuple[Tensor, Tensor] | None = None,
        weight: Tensor | None = None,
    ) -> Tensor:
        """Loss of ``query [B, d]`` for ``target [B]``; ``generator`` makes the negative draw reproducible."""
        parts = [target] if self.in_batch else []
        if self.num_negatives > 0:
            parts.append(self.sample_negatives(generator).to(target.device))
        candidates = torch.sort(torch.cat(parts)).values  # repeats are masked in the loss
        batch_size = int(target.shape[0])
        return sampled_softmax_loss(
            query,
            target,
            item_embedding,
            candidates,
            self.log_q(candidates, batch_size),
            sparse=self.sparse,
            history=history,
            weight=weight,
        )


class FullSoftmaxLoss(nn.Module):
    """Cross entropy over the full catalogue; same call signature as :class:`SampledSoftmaxLoss`."""

    def forward(
        self,
        query: Tensor,
        target: Tensor,
        item_embedding: Tensor,
        generator: torch.Generator | None = None,
        *,
        history: tuple[Tensor, Tensor] | None = None,
        weight: Tensor | None = None,
    ) -> Tensor:
        return full_softmax_loss(query, target, item_embedding, history, weight)


@dataclass(frozen=True)
class LossConfig:
    """Which softmax trains the model, and how its negatives are drawn.

    ``kind="auto"`` takes the exact full softmax while the catalogue has at most ``full_max_items``
    items (a ``[B, N]`` score matrix per step is then cheap next to the GNN) and the sampled softmax
    with log-Q correction above that.
    """

    kind: Literal["auto", "sampled", "full"] = "auto"
    full_max_items: int = 20_000
    num_negatives: int = 2048
    negative_alpha: float = 0.75
    negative_uniform_mix: float = 0.1
    in_batch_negatives: bool = True
    type_weights: tuple[float, float, float] = (1.0, 1.0, 1.0)  # by the target's type: clicks, carts, orders

    def __post_init__(self) -> None:
        if self.kind not in ("auto", "sampled", "full"):
            raise ValueError(f"loss.kind must be 'auto', 'sampled' or 'full', got {self.kind!r}")
        object.__setattr__(self, "type_weights", tuple(float(x) for x in self.type_weights))
        if len(self.type_weights) != 3 or min(self.type_weights) <= 0:
            raise ValueError("loss.type_weights must be three positive weights (clicks, carts, orders)")

    def resolve(self, num_items: int) -> Literal["sampled", "full"]:
        """The softmax actually used for a catalogue of ``num_items``."""
        if self.kind != "auto":
            return self.kind
        return "full" if num_items <= self.full_max_items else "sampled"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["type_weights"] = list(self.type_weights)
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> LossConfig:
        return from_mapping(cls, values, "loss")


def make_loss(config: LossConfig, item_counts: np.ndarray, *, sparse: bool = False) -> nn.Module:
    """The loss module of ``config`` for a catalogue with training-target counts ``item_counts``."""
    kind = config.resolve(len(item_counts))
    if kind == "full":
        if sparse:
            raise ValueError(
                "sparse_embedding needs the sampled softmax (the full softmax touches every row)"
            )
        return FullSoftmaxLoss()
    return SampledSoftmaxLoss(
        item_counts,
        config.num_negatives,
        alpha=config.negative_alpha,
        uniform_mix=config.negative_uniform_mix,
        in_batch=config.in_batch_negatives,
        sparse=sparse,
    )
