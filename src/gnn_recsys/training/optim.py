"""Optimisers and gradient clipping, dense and sparse item tables alike."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from gnn_recsys.training.config import TrainConfig


class Optimizers:
    """The optimiser(s) of a model, stepped together: one for all parameters, or -- with a sparse item
    embedding -- ``SparseAdam`` (lazy Adam: only rows in the batch are read and written) for the
    embedding plus Adam/AdamW for the rest."""

    def __init__(self, optimizers: list[torch.optim.Optimizer]) -> None:
        self.optimizers = optimizers

    def zero_grad(self) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)

    def unscale_(self, scaler: torch.amp.GradScaler) -> None:
        for opt in self.optimizers:
            scaler.unscale_(opt)

    def step(self, scaler: torch.amp.GradScaler) -> None:
        for opt in self.optimizers:
            scaler.step(opt)

    def set_lr(self, lr: float) -> None:
        for opt in self.optimizers:
            for group in opt.param_groups:
                group["lr"] = lr * group.get("lr_scale", 1.0)

    def state_dict(self) -> list[dict[str, Any]]:
        return [opt.state_dict() for opt in self.optimizers]

    def load_state_dict(self, states: list[dict[str, Any]]) -> None:
        for opt, state in zip(self.optimizers, states, strict=True):
            opt.load_state_dict(state)


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> Optimizers:
    """AdamW (decoupled weight decay) or Adam (L2 in the gradient, as the paper); a sparse item table
    (``model.item_embedding.sparse``) goes to ``SparseAdam`` (no weight decay on it)."""
    dense_cls = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    table = model.item_embedding.weight
    rest = [p for p in model.parameters() if p is not table or not model.item_embedding.sparse]
    groups: list[dict[str, Any]] = [{"params": rest}]
    priors = {id(p) for name, p in model.named_parameters() if name.endswith("_prior")}
    if priors and config.prior_lr_scale != 1.0:  # the bonus priors in a group of their own
        groups = [
            {"params": [p for p in rest if id(p) not in priors]},
            {
                "params": [p for p in rest if id(p) in priors],
                "lr": config.lr * config.prior_lr_scale,
                "lr_scale": config.prior_lr_scale,
                "weight_decay": 0.0,
            },
        ]
    dense = dense_cls(groups, lr=config.lr, weight_decay=config.weight_decay)
    if not model.item_embedding.sparse:
        return Optimizers([dense])
    return Optimizers([torch.optim.SparseAdam([table], lr=config.lr), dense])


def clip_grad_norm(model: torch.nn.Module, max_norm: float) -> Tensor:
    """``clip_grad_norm_`` that also handles sparse gradients (coalesced in place first)."""
    params = [p for p in model.parameters() if p.grad is not None]
    if not any(p.grad.is_sparse for p in params):  # type: ignore[union-attr]
        return torch.nn.utils.clip_grad_norm_(params, max_norm)
    norms = []
    for p in params:
        assert p.grad is not None
        if p.grad.is_sparse:
            p.grad = p.grad.coalesce()
            norms.append(p.grad._values().norm())
        else:
            norms.append(p.grad.norm())
    total = torch.stack([n.float() for n in norms]).norm()
    scale = (max_norm / (total + 1e-6)).clamp(max=1.0)
    for p in params:
        p.grad.mul_(scale.to(p.grad.dtype))  # type: ignore[union-attr]
    return total


def learning_rate(config: TrainConfig, step: int, decays: int) -> float:
    """Linear warm-up over ``warmup_steps``, then ``lr * lr_decay ** decays`` (one decay per plateau)."""
    warm = min(1.0, (step + 1) / config.warmup_steps) if config.warmup_steps > 0 else 1.0
    return config.lr * warm * config.lr_decay**decays
