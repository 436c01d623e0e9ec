"""An exponential moving average of a model's weights (Polyak averaging), for validation and results.

With a decay ``d`` the average after step ``t`` is ``a_t = d_t a_{t-1} + (1 - d_t) w_t`` where
``d_t = min(d, (1 + t) / (10 + t))``: the early steps weigh more, so the average forgets the random
initialisation within a few steps instead of ``1 / (1 - d)``. The fit loop validates, keeps and
returns the average instead of the last weights; the optimiser keeps working on the raw weights.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn


class WeightAverage:
    """The moving average of ``model``'s parameters (each shared parameter once)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.names, self.params = zip(*model.named_parameters(), strict=True)
        self.average = [param.detach().clone() for param in self.params]
        self.updates = 0

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self) -> None:
        """Fold the current weights in (call after every optimiser step)."""
        weight = 1.0 - self.current_decay()
        # one multi-tensor launch for all parameters instead of one per parameter: on a GPU the
        # main process launching kernels is what caps training
        torch._foreach_lerp_(self.average, [param.detach() for param in self.params], weight)
        self.updates += 1

    @torch.no_grad()
    def copy_to_model(self) -> None:
        """Overwrite the model's parameters with the average."""
        for average, param in zip(self.average, self.params, strict=True):
            param.copy_(average)

    @contextmanager
    def swapped_in(self) -> Iterator[None]:
        """The model holds the average inside the block and its own weights again after it."""
        with torch.no_grad():
            saved = [param.detach().clone() for param in self.params]
        self.copy_to_model()
        try:
            yield
        finally:
            with torch.no_grad():
                for backup, param in zip(saved, self.params, strict=True):
                    param.copy_(backup)

    def state_dict(self) -> dict[str, object]:
        """Plain tensors and an int (checkpoints load with ``weights_only=True``)."""
        return {
            "updates": self.updates,
            "average": {
                name: t.detach().to("cpu", copy=True)
                for name, t in zip(self.names, self.average, strict=True)
            },
        }

    def load_state_dict(self, state: dict[str, object]) -> None:
        average: dict[str, Tensor] = state["average"]  # type: ignore[assignment]
        if sorted(average) != sorted(self.names):
            raise ValueError("weight average: the checkpoint's parameters are not this model's")
        with torch.no_grad():
            for name, target in zip(self.names, self.average, strict=True):
                target.copy_(average[name])
        self.updates = int(state["updates"])  # type: ignore[call-overload]
