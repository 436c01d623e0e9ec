"""The moving average of the weights: its formula by hand, the swap, shared parameters, checkpoints
(the fit loop's use of it is tested in test_trainer.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch import nn

from gnn_recsys.training.config import TrainConfig
from gnn_recsys.training.ema import WeightAverage


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _by_hand(snapshots: list[torch.Tensor], decay: float) -> torch.Tensor:
    """a_0 = w_0; a_t = d_t a_{t-1} + (1 - d_t) w_t with d_t = min(decay, t / (9 + t)), t = 1, 2, ..."""
    average = snapshots[0].clone()
    for t, weights in enumerate(snapshots[1:], start=1):
        d = min(decay, t / (9 + t))
        average = d * average + (1 - d) * weights
    return average


def test_average_follows_the_formula_and_swaps_in_and_out() -> None:
    layer = nn.Linear(3, 2, bias=False)
    average = WeightAverage(layer, decay=0.5)
    snapshots = [layer.weight.detach().clone()]
    for step in range(12):  # d_t grows 0.1, 0.18, ... and is capped at 0.5 from t = 9 on
        with torch.no_grad():
            layer.weight.add_(torch.full_like(layer.weight, float(step + 1)))
        snapshots.append(layer.weight.detach().clone())
        average.update()
    assert average.current_decay() == 0.5
    want = _by_hand(snapshots, 0.5)
    raw = layer.weight.detach().clone()
    with average.swapped_in():
        torch.testing.assert_close(layer.weight, want)
    assert torch.equal(layer.weight, raw)
    with pytest.raises(RuntimeError), average.swapped_in():
        raise RuntimeError("the raw weights come back even then")
    assert torch.equal(layer.weight, raw)


def test_shared_parameters_are_averaged_once_and_checkpoints_round_trip() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    model[1].weight = model[0].weight  # tied, as with model.tie_weights
    average = WeightAverage(model, decay=0.9)
    assert len(average.average) == 3  # one weight (shared) and two biases
    with torch.no_grad():
        model[0].weight.mul_(3.0)
    average.update()
    average.copy_to_model()
    assert model[1].weight is model[0].weight
    copy = WeightAverage(model, decay=0.9)
    copy.load_state_dict(average.state_dict())
    assert copy.updates == 1 and all(
        torch.equal(a, b) for a, b in zip(copy.average, average.average, strict=True)
    )
    with pytest.raises(ValueError, match="not this model's"):
        WeightAverage(nn.Linear(2, 2), decay=0.9).load_state_dict(average.state_dict())
    with pytest.raises(ValueError, match="ema_decay"):
        TrainConfig(ema_decay=1.0)
