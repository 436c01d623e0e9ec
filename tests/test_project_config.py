"""Project-level configuration a newcomer relies on: telemetry off, the quick environment."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
from kedro_telemetry import plugin as telemetry

from gnn_recsys import settings

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def test_kedro_telemetry_is_off_without_environment_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`.venv/bin/kedro` straight from a clone: no env var set, the committed .telemetry decides."""
    for name in ("DO_NOT_TRACK", "KEDRO_DISABLE_TELEMETRY"):
        monkeypatch.delenv(name, raising=False)
    assert telemetry._check_for_telemetry_consent(PROJECT_ROOT) is False

    # The CLI hook on a copy of the project: nothing sent, pyproject.toml unchanged.
    for name in ("pyproject.toml", ".telemetry"):
        shutil.copy(PROJECT_ROOT / name, tmp_path / name)
    before = (tmp_path / "pyproject.toml").read_text()

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("telemetry tried to send an event")

    monkeypatch.setattr(telemetry.requests, "post", no_network)
    metadata = type("Metadata", (), {"project_path": tmp_path})()
    hook = telemetry.KedroTelemetryHook()
    hook.before_command_run(project_metadata=metadata, command_args=["run"])
    hook.after_command_run()
    assert (tmp_path / "pyproject.toml").read_text() == before


def test_quick_environment_overrides_single_keys_of_the_base_parameters() -> None:
    """conf/quick sets a few keys; the settings' soft merge keeps their siblings from conf/base."""
    loader = settings.CONFIG_LOADER_CLASS(
        conf_source=str(PROJECT_ROOT / "conf"), env="quick", **settings.CONFIG_LOADER_ARGS
    )
    params = loader["parameters"]
    assert params["dgsr"]["train"]["max_epochs"] == 2  # from conf/quick
    assert params["dgsr"]["train"]["lr"] == 0.001  # still from conf/base
    assert params["dgsr"]["inference"]["top_k"] == 50
    assert params["synthetic"]["num_train_sessions"] == 4000 and params["synthetic"]["seed"] == 7


def test_gpu_environment_keeps_the_base_schedule_in_samples() -> None:
    """conf/gpu trains in 16x larger batches: warm-up, the plateau guard and the moving average must
    cover about as many samples as the base schedule does, or the preset silently trains differently."""

    def train_params(env: str | None) -> dict:
        loader = settings.CONFIG_LOADER_CLASS(
            conf_source=str(PROJECT_ROOT / "conf"), env=env, **settings.CONFIG_LOADER_ARGS
        )
        return loader["parameters"]["dgsr"]["train"]

    base, gpu = train_params("local"), train_params("gpu")
    ratio = gpu["batch_size"] / base["batch_size"]
    assert ratio >= 8 and gpu["lr"] > base["lr"]
    for key in ("warmup_steps", "min_steps"):
        assert gpu[key] * gpu["batch_size"] == pytest.approx(base[key] * base["batch_size"], rel=0.05), key
    # the average's decay per sample: decay ** (1 / batch)
    assert math.log(gpu["ema_decay"]) / gpu["batch_size"] == pytest.approx(
        math.log(base["ema_decay"]) / base["batch_size"], rel=0.05
    )
    assert gpu["samples_per_epoch"] == base["samples_per_epoch"]  # the rest comes from conf/base
