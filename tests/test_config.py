"""The typed configs are the only source of defaults: the YAML mirrors them, typos fail at once."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gnn_recsys.inference import InferenceConfig
from gnn_recsys.loader import SampleConfig
from gnn_recsys.training import FitConfig
from gnn_recsys.training.config import RefitConfig

PARAMS = Path(__file__).resolve().parents[1] / "conf" / "base" / "parameters_training.yml"


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


def test_yaml_sections_equal_the_dataclass_defaults() -> None:
    dgsr = yaml.safe_load(PARAMS.read_text())["dgsr"]
    defaults = FitConfig().to_dict()
    for section in ("model", "loss", "train", "loader"):
        assert dgsr[section] == {k: _plain(v) for k, v in defaults[section].items()}, section
    assert dgsr["inference"] == InferenceConfig().to_dict()
    assert dgsr["samples"] == {k: _plain(v) for k, v in vars(SampleConfig()).items()}
    assert dgsr["refit"] == vars(RefitConfig())
    assert FitConfig.from_dict(dgsr) == FitConfig()


def test_unknown_keys_are_named_with_the_valid_ones() -> None:
    with pytest.raises(
        ValueError, match=r"unknown key\(s\) \['embeding_dim'\] in dgsr.model; valid keys: .*embedding_dim"
    ):
        FitConfig.from_dict({"model": {"embeding_dim": 8}})
    with pytest.raises(ValueError, match=r"in dgsr.train"):
        FitConfig.from_dict({"train": {"epochs": 3}})
    with pytest.raises(ValueError, match="unknown config section"):
        FitConfig().with_(optimiser={"lr": 1.0})


def test_config_hash_ignores_how_a_run_executes_but_not_what_it_computes() -> None:
    base = FitConfig()
    assert base.with_(train={"max_epochs": 99, "device": "cpu"}, loader={"num_workers": 3}).config_hash() == (
        base.config_hash()
    )
    assert base.with_(train={"lr": 0.5}).config_hash() != base.config_hash()
    assert base.with_(model={"embedding_dim": 8}).config_hash() != base.config_hash()


def test_paper_environment_overrides_only_its_keys_and_builds_the_published_model() -> None:
    """`kedro run --env paper`: its keys merged over base (the rest of dgsr kept), a valid FitConfig."""
    from kedro.config import OmegaConfigLoader  # noqa: PLC0415

    from gnn_recsys import settings  # noqa: PLC0415
    from gnn_recsys.models.dgsr import DGSR  # noqa: PLC0415

    conf = PARAMS.parents[1]
    base = OmegaConfigLoader(str(conf), **settings.CONFIG_LOADER_ARGS)["parameters"]
    paper = OmegaConfigLoader(str(conf), env="paper", **settings.CONFIG_LOADER_ARGS)["parameters"]
    overrides = yaml.safe_load((conf / "paper" / "parameters.yml").read_text())["dgsr"]
    assert {k: v for k, v in paper.items() if k != "dgsr"} == {k: v for k, v in base.items() if k != "dgsr"}
    for section, values in base["dgsr"].items():
        if not isinstance(values, dict):
            assert paper["dgsr"][section] == overrides.get(section, values), section
            continue
        for key, value in values.items():  # every key not overridden keeps its base value
            assert paper["dgsr"][section][key] == overrides.get(section, {}).get(key, value), (section, key)
    config = FitConfig.from_dict(paper["dgsr"])
    model = config.model
    assert (model.num_layers, model.item_max_length, model.user_max_length) == (3, 50, 50)
    assert model.distinct_sessions and model.tie_weights and model.readout == "paper"
    assert (
        config.train.optimizer == "adam" and config.train.grad_clip is None and config.train.ema_decay is None
    )
    assert config.train.item_init == "normal"
    assert config.loss == FitConfig().loss and config.loader == FitConfig().loader
    assert SampleConfig.from_dict(paper["dgsr"]["samples"]).future_target_types == ()
    net = DGSR.from_config(100, model)
    assert net.readout.bias is None and net.convs["item1"].lin_child is net.convs["session1"].lin_query_long
