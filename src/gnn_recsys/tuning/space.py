"""The search space: which DGSR fields a study varies, and how, from plain parameters.

The space is written per config section, exactly like ``dgsr`` in ``parameters_training.yml``::

    train:
      lr: {low: 3.0e-4, high: 1.0e-2, log: true}   # float (log scale)
    model:
      num_layers: {low: 1, high: 3}                 # int (both bounds ints)
      distinct_sessions: {choices: [false, true]}   # categorical

so a single range can be changed or switched off from the command line
(``--params tuning.search_space.model.num_layers=null``). Every field is checked against the typed
configs when the space is read, so a typo fails before the first trial, naming the key.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from gnn_recsys.models.loss import LossConfig
from gnn_recsys.training.config import FitConfig

#: Loss fields that only matter for the sampled softmax; a study drops them when the loss is full.
SAMPLED_LOSS_FIELDS: frozenset[str] = frozenset(
    {"num_negatives", "negative_alpha", "negative_uniform_mix", "in_batch_negatives"}
)
_SPEC_KEYS = frozenset({"low", "high", "log", "step", "choices"})


@dataclass(frozen=True)
class Dimension:
    """One searched field: ``section.name`` with a float, int or categorical range."""

    section: str
    name: str
    kind: str  # "float", "int" or "categorical"
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[Any, ...] = ()

    @property
    def key(self) -> str:
        """The parameter's path below ``dgsr``, e.g. ``model.num_layers``."""
        return f"{self.section}.{self.name}"

    def suggest(self, trial: Any) -> Any:
        """The trial's value (``trial`` is an ``optuna.Trial``)."""
        if self.kind == "categorical":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(
                self.key, int(self.low), int(self.high), step=int(self.step or 1), log=self.log
            )
        return trial.suggest_float(self.key, float(self.low), float(self.high), step=self.step, log=self.log)


def _dimension(section: str, name: str, spec: Any) -> Dimension:
    where = f"tuning.search_space.{section}.{name}"
    if not isinstance(spec, dict):
        raise ValueError(
            f"{where} must be a mapping like {{low: 1, high: 3}} or {{choices: [...]}}, got {spec!r}"
        )
    unknown = sorted(set(spec) - _SPEC_KEYS)
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in {where}; valid keys: {sorted(_SPEC_KEYS)}")
    if "choices" in spec:
        choices = spec["choices"]
        if set(spec) != {"choices"} or not isinstance(choices, list) or not choices:
            raise ValueError(f"{where}: a categorical range is {{choices: [a, b, ...]}} and nothing else")
        bad = [c for c in choices if c is not None and not isinstance(c, bool | int | float | str)]
        if bad:
            raise ValueError(f"{where}: choices must be numbers, booleans, strings or null, got {bad!r}")
        return Dimension(section, name, "categorical", choices=tuple(choices))
    if "low" not in spec or "high" not in spec:
        raise ValueError(f"{where} needs low and high (or choices)")
    low, high, step = spec["low"], spec["high"], spec.get("step")
    numbers = [v for v in (low, high, step) if v is not None]
    if any(isinstance(v, bool) or not isinstance(v, int | float) for v in numbers):
        raise ValueError(f"{where}: low, high and step must be numbers, got {spec!r}")
    if not low < high:
        raise ValueError(f"{where}: low ({low}) must be below high ({high})")
    log = bool(spec.get("log", False))
    if log and (low <= 0 or step is not None):
        raise ValueError(f"{where}: a log range needs low > 0 and no step")
    kind = "int" if all(isinstance(v, int) for v in numbers) else "float"
    return Dimension(section, name, kind, low=low, high=high, log=log, step=step)


def parse_search_space(space: dict[str, Any] | None) -> list[Dimension]:
    """The dimensions of ``space`` (sections ``model``, ``loss``, ``train``); ``null`` entries are skipped."""
    sections = {
        name: {f.name for f in fields(type(getattr(FitConfig(), name)))}
        for name in ("model", "loss", "train")
    }
    dimensions = []
    for section, entries in (space or {}).items():
        if section not in sections:
            raise ValueError(
                f"tuning.search_space.{section}: unknown section; searchable sections: {sorted(sections)}"
            )
        for name, spec in (entries or {}).items():
            if name not in sections[section]:
                raise ValueError(
                    f"tuning.search_space.{section}.{name}: dgsr.{section} has no field {name!r}; "
                    f"valid keys: {sorted(sections[section])}"
                )
            if spec is not None:
                dimensions.append(_dimension(section, name, spec))
    if not dimensions:
        raise ValueError("tuning.search_space is empty: give at least one field to search")
    return dimensions


def effective_dimensions(dimensions: list[Dimension], loss: LossConfig, num_items: int) -> list[Dimension]:
    """``dimensions`` without the sampled-softmax fields when ``loss`` resolves to the full softmax.

    With the exact softmax (``loss.kind: auto`` on a catalogue of at most ``full_max_items`` items)
    the number of negatives changes nothing: searching it would only spend trials on noise.
    """
    searches_kind = any(d.key in ("loss.kind", "loss.full_max_items") for d in dimensions)
    if searches_kind or loss.resolve(num_items) == "sampled":
        return list(dimensions)
    return [d for d in dimensions if not (d.section == "loss" and d.name in SAMPLED_LOSS_FIELDS)]


def nest(flat: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{"model.num_layers": 3}`` -> ``{"model": {"num_layers": 3}}``."""
    out: dict[str, dict[str, Any]] = {}
    for key, value in flat.items():
        section, name = key.split(".", 1)
        out.setdefault(section, {})[name] = value
    return out
