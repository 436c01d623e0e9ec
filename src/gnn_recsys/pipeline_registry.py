"""Project pipelines.

Building blocks (each runnable alone once its inputs exist): ``ingestion``, ``data_split``,
``baselines``, ``graph_construction``, ``training``, ``ranker_period``, ``ranking``, ``evaluation``,
``candidate_export``. End to end: ``covisitation_otto`` (the two baselines) and ``dgsr_otto`` (DGSR
next to both baselines, then the ranking stage over co-visitation and DGSR; also ``__default__``).
``rerank_otto`` runs the ranking stage alone on the candidates a ``dgsr_otto`` run left.
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
    ranking,
    training,
)

BASELINE_MODELS = ("popularity", "covisitation")
ALL_MODELS = (*BASELINE_MODELS, "dgsr")
RANKED_MODELS = ("fusion", "reranker")
#: Scored next to the models, never exported: the oracle order of the ranker's candidates.
CEILING = "candidate_ceiling"


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
        + ranking.create_ranker_period_pipeline()
        + ranking.create_pipeline()
        + evaluation.create_pipeline(models=(*ALL_MODELS, *RANKED_MODELS, CEILING))
        + candidate_export.create_pipeline(models=(*ALL_MODELS, *RANKED_MODELS))
    )
    rerank_otto = (
        ranking.create_pipeline()
        + evaluation.create_pipeline(models=(*ALL_MODELS, *RANKED_MODELS, CEILING))
        + candidate_export.create_pipeline(models=RANKED_MODELS)
    )
    return {
        "ingestion": ingestion.create_pipeline(),
        "data_split": data_split.create_pipeline(),
        "baselines": baselines.create_pipeline(),
        "graph_construction": graph_construction.create_pipeline(),
        "training": training.create_pipeline(),
        "ranker_period": ranking.create_ranker_period_pipeline(),
        "ranking": ranking.create_pipeline(),
        "evaluation": evaluation.create_pipeline(models=ALL_MODELS),
        "candidate_export": candidate_export.create_pipeline(models=ALL_MODELS),
        "covisitation_otto": covisitation_otto,
        "dgsr_otto": dgsr_otto,
        "rerank_otto": rerank_otto,
        "__default__": dgsr_otto,
    }
