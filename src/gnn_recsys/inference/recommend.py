"""Full-catalogue top-K with a trained DGSR: encode sessions in loader batches, score items in blocks.

One representation per session at ``cut_ts = last ts + 1`` (its whole history); memory is bounded
by ``batch_size x block_size`` whatever the catalogue size. Runs on the model's device.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor

from gnn_recsys.data.schema import EVENT_TYPES
from gnn_recsys.graph.sampler import inference_samples
from gnn_recsys.loader.collate import SubgraphCollate
from gnn_recsys.loader.loaders import EpochBatches, LoaderConfig, make_loader
from gnn_recsys.loader.samples import SampleSet
from gnn_recsys.models.batch import DGSRBatch
from gnn_recsys.models.config import from_mapping
from gnn_recsys.models.dgsr import DGSR
from gnn_recsys.runtime import autocast, progress, share_cpu_with_workers

logger = logging.getLogger(__name__)

#: Keys of a per-type recent-items window: the event types' names, ``all`` for the shared list.
WINDOW_KEYS = (*EVENT_TYPES, "all")


def window_key(event_type: int | None) -> str:
    return "all" if event_type is None else EVENT_TYPES[event_type]


#: Inference on the CPU of the calling process (the MLflow model answering one request, tests).
NO_WORKERS = LoaderConfig(num_workers=0)


@dataclass(frozen=True)
class InferenceConfig:
    """Top-K candidate lists for the local test sessions and the test file."""

    top_k: int = 50
    batch_size: int = 512
    block_size: int = 65_536  # items scored per block in the full-catalogue top-K
    amp: bool = True  # mixed precision on CUDA
    #: the session's most recent distinct items always among the first this-many slots (0: off);
    #: ``"auto"``: per event type, the choice that scored best on the validation sessions (the
    #: model artifact holds it); or a mapping ``{clicks|carts|orders|all: window}``
    keep_session_items: int | str | Mapping[str, int] = "auto"
    keep_session_items_choices: tuple[int, ...] = (0, 5, 10, 20)  # what "auto" picks from
    #: which own items fill the window: "type" ordered, then carted, then clicked ones, each most
    #: recent first; "recency" the most recent whatever their type; "score" the model's own ranking
    keep_session_items_by: str = "type"

    def __post_init__(self) -> None:
        value = self.keep_session_items
        choices = tuple(int(c) for c in self.keep_session_items_choices)
        object.__setattr__(self, "keep_session_items_choices", choices)
        if self.keep_session_items_by not in ("recency", "type", "score"):
            raise ValueError(
                "inference.keep_session_items_by must be 'recency', 'type' or 'score', "
                f"got {self.keep_session_items_by!r}"
            )
        if not choices or min(choices) < 0:
            raise ValueError(
                f"inference.keep_session_items_choices must be >= 0 and not empty, got {choices}"
            )
        if isinstance(value, Mapping):
            bad = {k: v for k, v in value.items() if k not in WINDOW_KEYS or not isinstance(v, int) or v < 0}
            if bad:
                raise ValueError(
                    f"inference.keep_session_items: bad entries {bad}; keys are {WINDOW_KEYS}, values ints >= 0"
                )
        elif value != "auto" and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise ValueError(f"inference.keep_session_items must be 'auto' or an int >= 0, got {value!r}")

    def window(self, event_type: int | None) -> int:
        """The recent-items window of the list for ``event_type`` (None: the shared representation)."""
        value = self.keep_session_items
        if value == "auto":  # not resolved with a model's windows (see resolve): the widest choice
            return max(self.keep_session_items_choices)
        if isinstance(value, Mapping):
            key = window_key(event_type)
            return int(value[key] if key in value else value.get("all", 0))
        return int(value)

    def resolve(self, windows: Mapping[str, int] | None) -> InferenceConfig:
        """``"auto"`` replaced by the validated ``windows`` of a model artifact; without them (a model
        trained without validation sessions) the widest choice, which never loses a repeat."""
        if self.keep_session_items != "auto":
            return self
        if not windows:
            widest = max(self.keep_session_items_choices)
            logger.info("keep_session_items auto: the model has no validated windows, using %d", widest)
            return replace(self, keep_session_items=widest)
        return replace(self, keep_session_items={str(k): int(v) for k, v in windows.items()})

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        if isinstance(self.keep_session_items, Mapping):
            values["keep_session_items"] = dict(self.keep_session_items)
        values["keep_session_items_choices"] = list(self.keep_session_items_choices)
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> InferenceConfig:
        return from_mapping(cls, values, "inference")


@torch.no_grad()
def encode_sessions(
    model: DGSR,
    graph: Any,
    sessions: np.ndarray,
    cut_ts: np.ndarray,
    *,
    batch_size: int = 512,
    loader: LoaderConfig = NO_WORKERS,
    sampler: Any = None,
    amp: bool = True,
    show_progress: bool = False,
) -> Iterator[tuple[Tensor, DGSRBatch]]:
    """Yield ``(representations [<=batch_size, d], batch)`` on the model's device, in input order."""
    device = next(model.parameters()).device
    samples = SampleSet(sessions, cut_ts, np.zeros(len(sessions), dtype=np.int64))
    collate = SubgraphCollate(graph, samples, model.config, sampler=sampler, with_target=False)
    batches = EpochBatches(len(samples), batch_size)
    context, _ = autocast(device, amp)
    was_training = model.training
    model.eval()
    try:
        with share_cpu_with_workers(device, loader.workers()):
            data = make_loader(collate, batches, loader, device, persistent=False)
            for host_batch in progress(data, show_progress, desc="encode", total=len(batches)):
                batch = host_batch.to(device, non_blocking=True)
                with context:
                    reps = model(batch).float()
                yield reps, batch
    finally:
        model.train(was_training)


@torch.no_grad()
def recommend_by_type(
    model: DGSR,
    graph: Any,
    session_indices: np.ndarray,
    config: InferenceConfig = InferenceConfig(),  # noqa: B008 - frozen dataclass
    *,
    event_types: tuple[int | None, ...] = (0, 1, 2),
    loader: LoaderConfig = NO_WORKERS,
    sampler: Any = None,
    return_aids: bool = True,
    show_progress: bool = False,
) -> dict[int | None, tuple[np.ndarray, np.ndarray]]:
    """Top-``k`` lists ``(items [n, k], scores [n, k])`` per event type (None = shared representation).

    Each session is encoded once and scored with every requested type head; items are aids
    (``graph.item_aid``) or, with ``return_aids=False``, item indices.
    """
    session_indices, cut_ts = inference_samples(graph, np.asarray(session_indices, dtype=np.int64))
    parts: dict[int | None, tuple[list[np.ndarray], list[np.ndarray]]] = {t: ([], []) for t in event_types}
    for reps, batch in encode_sessions(
        model,
        graph,
        session_indices,
        cut_ts,
        batch_size=config.batch_size,
        loader=loader,
        sampler=sampler,
        amp=config.amp,
        show_progress=show_progress,
    ):
        for event_type, (items, scores) in parts.items():
            index, score = model.topk(
                reps,
                batch,
                config.top_k,
                event_type,
                config.block_size,
                keep_session_items=config.window(event_type),
                keep_by=config.keep_session_items_by,
            )
            items.append(index.cpu().numpy())
            scores.append(score.cpu().numpy())
    width = min(config.top_k, graph.num_items)
    result = {}
    for event_type, (items, scores) in parts.items():
        item_matrix = np.concatenate(items) if items else np.zeros((0, width), dtype=np.int64)
        score_matrix = np.concatenate(scores) if scores else np.zeros((0, width), dtype=np.float32)
        if return_aids:
            item_matrix = np.asarray(graph.item_aid)[item_matrix]
        result[event_type] = (item_matrix, score_matrix)
    return result


def recommend(
    model: DGSR,
    graph: Any,
    session_indices: np.ndarray,
    config: InferenceConfig = InferenceConfig(),  # noqa: B008 - frozen dataclass
    *,
    event_type: int | None = None,
    **options: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """One top-``k`` list per session (``event_type`` picks a head); see :func:`recommend_by_type`."""
    return recommend_by_type(model, graph, session_indices, config, event_types=(event_type,), **options)[
        event_type
    ]


@torch.no_grad()
def recall_at_k(
    model: DGSR,
    graph: Any,
    samples: SampleSet,
    *,
    k: int = 20,
    batch_size: int = 512,
    block_size: int = 65_536,
    loader: LoaderConfig = NO_WORKERS,
    sampler: Any = None,
    amp: bool = True,
    show_progress: bool = False,
) -> float:
    """Share of samples whose target is in the top ``k`` of the full catalogue (``nan`` if no samples).

    Typed samples are scored through the head of their target's type.
    """
    if len(samples) == 0:
        return float("nan")
    hits = torch.zeros((), dtype=torch.long, device=next(model.parameters()).device)
    for found in _target_hits(
        model, graph, samples, (0,), k=k, batch_size=batch_size, block_size=block_size, loader=loader,
        sampler=sampler, amp=amp, show_progress=show_progress,
    ):  # fmt: skip
        hits += found[0].sum()  # summed on device: one sync at the end
    return int(hits) / len(samples)


def _target_hits(
    model: DGSR,
    graph: Any,
    samples: SampleSet,
    windows: tuple[int, ...],
    *,
    k: int,
    batch_size: int,
    block_size: int,
    loader: LoaderConfig,
    sampler: Any,
    amp: bool,
    show_progress: bool = False,
    keep_by: str = "recency",
) -> Iterator[dict[int, Tensor]]:
    """Per loader batch of ``samples``, ``{window: [b] bool on the model's device}``: whether each
    sample's target is in its top ``k`` with that recent-items window (typed samples through the
    head of their target's type)."""
    device = next(model.parameters()).device
    start = 0
    for reps, batch in encode_sessions(
        model,
        graph,
        samples.session,
        samples.cut_ts,
        batch_size=batch_size,
        loader=loader,
        sampler=sampler,
        amp=amp,
        show_progress=show_progress,
    ):
        rows = slice(start, start + reps.shape[0])
        target_type = None
        if samples.target_type is not None:
            target_type = torch.tensor(samples.target_type[rows], device=device)
        target = torch.tensor(samples.target[rows], device=device).unsqueeze(1)
        found = {}
        for window in windows:
            index, _ = model.topk(
                reps, batch, k, target_type, block_size, keep_session_items=window, keep_by=keep_by
            )
            found[window] = (index == target).any(dim=1)
        yield found
        start += reps.shape[0]


@torch.no_grad()
def choose_keep_windows(
    model: DGSR,
    graph: Any,
    samples: SampleSet,
    choices: tuple[int, ...],
    *,
    k: int = 20,
    batch_size: int = 512,
    block_size: int = 65_536,
    loader: LoaderConfig = NO_WORKERS,
    sampler: Any = None,
    amp: bool = True,
    keep_by: str = "recency",
) -> tuple[dict[str, int], dict[str, dict[int, float]]]:
    """Per event type, the recent-items window (one of ``choices``) with the best recall@``k`` on
    ``samples`` (validation sessions), and every window's recall: ``(windows, {type: {window: recall}})``.

    Data where sessions come back to their items (OTTO's orders) want the widest window; data
    without repeats (a user rates a film once) want none. Ties go to the wider window (it never
    finds fewer repeats); a type without samples takes the choice over all samples (key ``all``).
    """
    choices = tuple(sorted(set(choices)))
    if len(samples) == 0:
        return {}, {}
    hits: dict[int, list[np.ndarray]] = {w: [] for w in choices}
    for found in _target_hits(
        model, graph, samples, choices, k=k, batch_size=batch_size, block_size=block_size, loader=loader,
        sampler=sampler, amp=amp, keep_by=keep_by,
    ):  # fmt: skip
        for window, hit in found.items():
            hits[window].append(hit.cpu().numpy())
    num_samples = len(samples)
    found = {w: np.concatenate(h) for w, h in hits.items()}
    types = samples.target_type if samples.target_type is not None else np.full(num_samples, -1)
    groups = {"all": np.ones(num_samples, dtype=bool)} | {
        name: types == code for code, name in enumerate(EVENT_TYPES) if (types == code).any()
    }
    recalls = {name: {w: float(found[w][mask].mean()) for w in choices} for name, mask in groups.items()}
    best = {name: max(choices, key=lambda w, r=r: (round(r[w], 12), w)) for name, r in recalls.items()}
    windows = {name: best.get(name, best["all"]) for name in WINDOW_KEYS}
    return windows, recalls
