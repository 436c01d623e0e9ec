"""Project pipelines.

Building blocks (each runnable alone once its inputs exist): ``ingestion``, ``data_split``,
``baselines``, ``graph_construction``, ``training``, ``evaluation``, ``candidate_export``.
End to end: ``covisitation_otto`` (the two baselines) and ``dgsr_otto`` (DGSR next to both
baselines; also ``__default__``). Tuning: ``tuning`` (the Optuna study alone, on the samples a
``dgsr_otto`` run wrote) and ``tune_dgsr`` (the data the study needs, then the study).
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
    tuning,
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
    tune_dgsr = (
        data
        + graph_construction.create_pipeline().only_nodes("build_item_vocabulary")
        + training.create_pipeline().only_nodes("make_dgsr_training_data")
        + tuning.create_pipeline()
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
        "tuning": tuning.create_pipeline(),
        "tune_dgsr": tune_dgsr,
        "__default__": dgsr_otto,
    }
