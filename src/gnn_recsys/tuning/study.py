"""An Optuna study over DGSR's hyperparameters on prepared training and validation samples.

Every trial trains DGSR from scratch on the same graph and samples (nothing upstream is redone) and
is scored by its best validation recall@``train.eval_k`` -- the early-stopping metric, measured on
training sessions held out whole, never on the local test labels, so the reported test score stays
an honest estimate. Trials that trail the median of earlier trials at the same epoch are pruned; a
minutes budget stops starting trials at the deadline and ends the running one after its current epoch
(it then counts with the best value it reached).

Nothing here knows Kedro or MLflow: a :class:`TrialTracker` receives each trial's parameters, its
per-epoch metrics and its outcome (the pipeline's tracker makes each trial a nested MLflow run).
"""

from __future__ import annotations

import copy
import gc
import logging
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Protocol

import optuna
import yaml

from gnn_recsys.loader.samples import SampleSet
from gnn_recsys.training.config import FitConfig
from gnn_recsys.training.fit import train_dgsr
from gnn_recsys.tuning.space import Dimension, effective_dimensions, nest, parse_search_space

logger = logging.getLogger(__name__)

#: The default search space; ``conf/base/parameters_tuning.yml`` mirrors it (a test keeps both equal).
DEFAULT_SEARCH_SPACE: dict[str, dict[str, dict[str, Any]]] = {
    "train": {"lr": {"low": 3.0e-4, "high": 1.0e-2, "log": True}},
    "model": {
        "embedding_dim": {"choices": [32, 64, 128]},
        "item_max_length": {"low": 10, "high": 50, "step": 10},
        "user_max_length": {"low": 5, "high": 50, "step": 5},
        "num_layers": {"low": 1, "high": 3},
        "dropout": {"low": 0.0, "high": 0.4},
        "distinct_sessions": {"choices": [False, True]},
    },
    "loss": {"num_negatives": {"choices": [512, 1024, 2048, 4096]}},
}


@dataclass(frozen=True)
class TuningConfig:
    """How long to search, what, and how (the ``tuning`` parameters)."""

    n_trials: int | None = 20  # None: only the minutes budget stops the study
    timeout_minutes: float | None = None  # wall-time budget (None: only n_trials)
    seed: int = 7  # the sampler's seed (each trial trains with dgsr.train.seed)
    pruner: str = "median"  # "median" or "none"
    pruner_startup_trials: int = 3  # trials that are never pruned (the median needs a few)
    pruner_warmup_epochs: int = 2  # epochs of a trial before it may be pruned
    #: dgsr fields set for every trial and not searched, e.g. a shorter ``train.max_epochs``.
    trial_overrides: dict[str, dict[str, Any]] = field(default_factory=lambda: {"train": {"progress": False}})
    search_space: dict[str, dict[str, Any]] = field(
        default_factory=lambda: copy.deepcopy(DEFAULT_SEARCH_SPACE)
    )

    def __post_init__(self) -> None:
        if self.n_trials is None and self.timeout_minutes is None:
            raise ValueError(
                "tuning: give n_trials or timeout_minutes (or both); without either it never stops"
            )
        if self.n_trials is not None and self.n_trials < 1:
            raise ValueError(f"tuning.n_trials must be >= 1 or null, got {self.n_trials}")
        if self.timeout_minutes is not None and self.timeout_minutes <= 0:
            raise ValueError(f"tuning.timeout_minutes must be > 0 or null, got {self.timeout_minutes}")
        if self.pruner not in ("median", "none"):
            raise ValueError(f"tuning.pruner must be 'median' or 'none', got {self.pruner!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> TuningConfig:
        values = dict(values or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown key(s) {unknown} in tuning; valid keys: {sorted(known)}")
        if values.get("trial_overrides") is None:
            values.pop("trial_overrides", None)
        return cls(**values)


class _BudgetSpent(Exception):
    """Raised after an epoch once the study's minutes budget is spent: the trial ends with what it has."""


class TrialLog(Protocol):
    def epoch(self, epoch: int, metrics: dict[str, float]) -> None: ...

    def finish(self, outcome: dict[str, Any]) -> None: ...


class TrialTracker(Protocol):
    """Opens one record per trial (e.g. a nested MLflow run) for the duration of the trial."""

    def trial(self, number: int, params: dict[str, Any]) -> Any:  # a context manager yielding a TrialLog
        ...


class _NoLog:
    def epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        pass

    def finish(self, outcome: dict[str, Any]) -> None:
        pass


class NullTracker:
    """Records nothing."""

    @contextmanager
    def trial(self, number: int, params: dict[str, Any]) -> Iterator[TrialLog]:
        yield _NoLog()


@dataclass
class StudyResult:
    """The study's outcome: one row per trial, the best trial's parameters and value."""

    trials: list[dict[str, Any]]  # trial, state, objective, epochs, best_epoch, seconds, <params>
    best_params: dict[str, Any]  # flat: {"model.num_layers": 3, ...}
    best_value: float
    best_trial: int
    metric: str  # e.g. "val_recall@20"
    dimensions: list[str]  # the keys searched (after dropping what the resolved loss ignores)

    def best_dgsr_params(self) -> dict[str, Any]:
        """The best parameters as the ``dgsr`` parameters' nested sections."""
        return {"dgsr": nest(self.best_params)}


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _sampler_and_pruner(
    config: TuningConfig,
) -> tuple[optuna.samplers.BaseSampler, optuna.pruners.BasePruner]:
    sampler = optuna.samplers.TPESampler(seed=config.seed)
    if config.pruner == "none":
        return sampler, optuna.pruners.NopPruner()
    pruner = optuna.pruners.MedianPruner(
        n_startup_trials=config.pruner_startup_trials, n_warmup_steps=config.pruner_warmup_epochs
    )
    return sampler, pruner


def run_study(
    graph: Any,
    train_samples: SampleSet,
    val_samples: SampleSet,
    base: dict[str, Any],
    config: TuningConfig,
    *,
    tracker: TrialTracker | None = None,
) -> StudyResult:
    """Search ``config.search_space`` around the ``dgsr`` parameters ``base``; maximise validation recall.

    Each trial's configuration is ``base``, then ``config.trial_overrides``, then the trial's values.
    """
    if len(val_samples) == 0:
        raise ValueError("tuning needs validation samples: dgsr.samples.val_fraction must be > 0")
    tracker = tracker or NullTracker()
    fixed = _deep_merge(
        {k: base.get(k) or {} for k in ("model", "loss", "train", "loader")}, config.trial_overrides or {}
    )
    fixed_config = FitConfig.from_dict(fixed)  # fails here, naming the key, on a bad override
    dimensions: list[Dimension] = parse_search_space(config.search_space)
    searched = effective_dimensions(dimensions, fixed_config.loss, graph.num_items)
    dropped = sorted({d.key for d in dimensions} - {d.key for d in searched})
    if dropped:
        logger.info(
            "Tuning: %s not searched: the loss is the full softmax over %d items", dropped, graph.num_items
        )
    metric = f"val_recall@{fixed_config.train.eval_k}"
    deadline = None if config.timeout_minutes is None else time.monotonic() + 60.0 * config.timeout_minutes
    rows: list[dict[str, Any]] = []

    def objective(trial: optuna.Trial) -> float:
        params = {d.key: d.suggest(trial) for d in searched}
        trial_config = FitConfig.from_dict(_deep_merge(fixed, nest(params)))
        row: dict[str, Any] = {"trial": trial.number, "state": "running", "objective": math.nan}
        best = {"value": -math.inf, "epoch": 0, "epochs": 0}
        pruned: optuna.TrialPruned | None = None
        t0 = time.perf_counter()
        with tracker.trial(trial.number, params) as log:

            def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
                log.epoch(epoch, metrics)
                value = metrics[metric]
                best["epochs"] = epoch
                if value > best["value"]:
                    best["value"], best["epoch"] = value, epoch
                trial.report(value, epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"{metric} {value:.5f} below the median at epoch {epoch}")
                if deadline is not None and time.monotonic() > deadline:
                    raise _BudgetSpent

            try:
                train_dgsr(graph, train_samples, val_samples, trial_config, on_epoch_end=on_epoch)
                row["state"] = "complete"
            except _BudgetSpent:
                row["state"] = "complete"
                row["reason"] = f"stopped after epoch {best['epochs']}: the minutes budget is spent"
            except optuna.TrialPruned as stop:
                row["state"] = "pruned"
                row["reason"] = str(stop)
                pruned = stop  # raised after the tracker's record is closed: a pruned trial is no failure
            except Exception:
                row["state"] = "failed"
                raise
            finally:
                row.update(
                    objective=best["value"] if best["epochs"] else math.nan,
                    epochs=best["epochs"],
                    best_epoch=best["epoch"],
                    seconds=round(time.perf_counter() - t0, 1),
                    **params,
                )
                rows.append(row)
                log.finish(dict(row))
                gc.collect()  # the trial's loader workers go now, not at some later collection
                logger.info(
                    "Trial %d %s: %s %.5f at epoch %d of %d, %s",
                    trial.number,
                    row["state"],
                    metric,
                    best["value"],
                    best["epoch"],
                    best["epochs"],
                    params,
                )
        if pruned is not None:
            raise pruned
        return float(best["value"])

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler, pruner = _sampler_and_pruner(config)
    study = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner)

    def stop_at_deadline(study: optuna.Study, _trial: optuna.trial.FrozenTrial) -> None:
        if deadline is not None and time.monotonic() > deadline:
            study.stop()

    # the deadline is checked after each trial (and epoch), so a study always has at least one trial
    study.optimize(objective, n_trials=config.n_trials, callbacks=[stop_at_deadline], gc_after_trial=True)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise RuntimeError(f"no tuning trial completed ({len(study.trials)} started): raise the budget")
    best = max(complete, key=lambda t: t.value)
    return StudyResult(
        trials=rows,
        best_params=dict(best.params),
        best_value=float(best.value),
        best_trial=best.number,
        metric=metric,
        dimensions=[d.key for d in searched],
    )


def params_cli(dgsr_params: dict[str, Any]) -> str:
    """The ``kedro run --params`` string of nested parameters, e.g. ``dgsr.model.num_layers=3,...``."""

    def flat(prefix: str, value: Any) -> Iterator[str]:
        if isinstance(value, dict):
            for key, inner in value.items():
                yield from flat(f"{prefix}.{key}" if prefix else str(key), inner)
        else:
            yield f"{prefix}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}"

    return ",".join(flat("", dgsr_params))


def best_params_yaml(result: StudyResult) -> str:
    """The best parameters as a YAML parameters file, with a header saying where they come from and how to use them."""
    nested = result.best_dgsr_params()
    header = [
        f"# Best DGSR parameters of a tuning study: trial {result.best_trial}, "
        f"{result.metric} {result.best_value:.5f} ({len(result.trials)} trials).",
        "# Only the searched fields; everything else keeps its value from conf/base. Use it with",
        f'#   kedro run --params "{params_cli(nested)}"',
        "# or copy this file to conf/local/parameters_dgsr_tuned.yml (merged into conf/base's dgsr section).",
    ]
    return "\n".join(header) + "\n" + yaml.safe_dump(nested, sort_keys=False)
