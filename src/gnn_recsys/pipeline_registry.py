"""Project pipelines.

Building blocks (each runnable alone once its inputs exist): ``ingestion``, ``data_split``,
``baselines``, ``graph_construction``, ``training``, ``evaluation``, ``candidate_export``.
End to end: ``covisitation_otto`` (the two baselines) and ``dgsr_otto`` (DGSR next to both
baselines; also ``__default__``). ``dgsr_otto`` split around its ``train_dgsr`` node, for training
under ``torchrun`` in between (docs/model.md): ``dgsr_before_training`` and ``dgsr_after_training``.
"""

from __future__ import annotations

from kedro.pipeline import Pipeline

from gnn_recsys.pipelines import (
    baselines,
    candidate_export,
    data_split,
    evaluation,
    graph_construction,
    ingestion,
    training,
)

BASELINE_MODELS = ("popularity", "covisitation")
ALL_MODELS = (*BASELINE_MODELS, "dgsr")


def register_pipelines() -> dict[str, Pipeline]:
    """Register the project's pipelines."""
    data = ingestion.create_pipeline() + data_split.create_pipeline()
    covisitation_otto = (
        data
        + baselines.create_pipeline()
        + evaluation.create_pipeline(models=BASELINE_MODELS)
        + candidate_export.create_pipeline(models=BASELINE_MODELS)
    )
    dgsr_otto = (
        data
        + baselines.create_pipeline()
        + graph_construction.create_pipeline()
        + training.create_pipeline()
        + evaluation.create_pipeline(models=ALL_MODELS)
        + candidate_export.create_pipeline(models=ALL_MODELS)
    )
    return {
        "ingestion": ingestion.create_pipeline(),
        "data_split": data_split.create_pipeline(),
        "baselines": baselines.create_pipeline(),
        "graph_construction": graph_construction.create_pipeline(),
        "training": training.create_pipeline(),
        "evaluation": evaluation.create_pipeline(models=ALL_MODELS),
        "candidate_export": candidate_export.create_pipeline(models=ALL_MODELS),
        "covisitation_otto": covisitation_otto,
        "dgsr_otto": dgsr_otto,
        "dgsr_before_training": dgsr_otto - dgsr_otto.from_nodes("train_dgsr"),
        "dgsr_after_training": dgsr_otto.from_nodes("train_dgsr") - dgsr_otto.only_nodes("train_dgsr"),
        "__default__": dgsr_otto,
    }
