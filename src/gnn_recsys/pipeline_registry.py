"""Project pipelines.

Building blocks (each runnable alone once its inputs exist): ``ingestion``, ``data_split``,
``baselines``, ``graph_construction``, ``training``, ``ranking``, ``evaluation``,
``candidate_export``.
End to end: ``covisitation_otto`` (the two baselines) and ``dgsr_otto`` (DGSR next to both
baselines, then the ranking stage over co-visitation and DGSR; also ``__default__``);
``rerank_otto`` runs the ranking stage alone on the candidates a ``dgsr_otto`` run left. Tuning:
``tuning`` (the Optuna study alone, on the samples a ``dgsr_otto`` run wrote) and ``tune_dgsr`` (the data the study needs, then the study).
``dgsr_otto`` split around its ``train_dgsr`` node, for training under ``torchrun`` in between
(docs/model.md): ``dgsr_before_training`` and ``dgsr_after_training``.

Each building block is a modular pipeline with a namespace (see ``NAMESPACES``), so kedro-viz draws
seven collapsible stages instead of one flat graph and node names read ``<stage>.<node>``
(``kedro run --nodes=dgsr_training.train_dgsr``). Dataset and parameter names are not prefixed: the
catalog keeps its plain names.
"""

from __future__ import annotations

from kedro.pipeline import Pipeline, pipeline

from gnn_recsys.pipelines import (
    baselines,
    candidate_export,
    data_split,
    evaluation,
    graph_construction,
    ingestion,
    ranking,
    training,
    tuning,
)

BASELINE_MODELS = ("popularity", "recent_items", "covisitation")
ALL_MODELS = (*BASELINE_MODELS, "dgsr")
RANKED_MODELS = ("fusion", "reranker")
#: Scored next to the models, never exported: the oracle order of the ranker's candidates.
CEILING = "candidate_ceiling"

# registered pipeline name -> namespace shown in kedro-viz and prefixed to node names
NAMESPACES = {
    "ingestion": "ingestion",
    "data_split": "split",
    "baselines": "baselines",
    "graph_construction": "graph",
    "training": "dgsr_training",
    "evaluation": "evaluation",
    "candidate_export": "export",
    "ranking": "ranking",
}


def _stage(name: str, stage: Pipeline) -> Pipeline:
    """``stage`` under its namespace, with datasets and parameters left unprefixed."""
    return pipeline(stage, namespace=NAMESPACES[name], prefix_datasets_with_namespace=False)


def register_pipelines() -> dict[str, Pipeline]:
    """Register the project's pipelines."""
    stages = {
        "ingestion": _stage("ingestion", ingestion.create_pipeline()),
        "data_split": _stage("data_split", data_split.create_pipeline()),
        "baselines": _stage("baselines", baselines.create_pipeline()),
        "graph_construction": _stage("graph_construction", graph_construction.create_pipeline()),
        "training": _stage("training", training.create_pipeline()),
    }
    data = stages["ingestion"] + stages["data_split"]
    covisitation_otto = (
        data
        + stages["baselines"]
        + _stage("evaluation", evaluation.create_pipeline(models=BASELINE_MODELS))
        + _stage("candidate_export", candidate_export.create_pipeline(models=BASELINE_MODELS))
    )
    ranking_stage = _stage("ranking", ranking.create_pipeline())
    scored = (*ALL_MODELS, *RANKED_MODELS, CEILING)
    dgsr_otto = (
        data
        + stages["baselines"]
        + stages["graph_construction"]
        + stages["training"]
        + ranking_stage
        + _stage("evaluation", evaluation.create_pipeline(models=scored))
        + _stage("candidate_export", candidate_export.create_pipeline(models=(*ALL_MODELS, *RANKED_MODELS)))
    )
    rerank_otto = (
        ranking_stage
        + _stage("evaluation", evaluation.create_pipeline(models=scored))
        + _stage("candidate_export", candidate_export.create_pipeline(models=RANKED_MODELS))
    )
    tune_dgsr = (
        data
        + stages["graph_construction"].only_nodes("graph.build_item_vocabulary")
        + stages["training"].only_nodes(
            "dgsr_training.make_dgsr_train_graph", "dgsr_training.make_dgsr_samples"
        )
        + pipeline(tuning.create_pipeline(), namespace="tuning", prefix_datasets_with_namespace=False)
    )
    return {
        **stages,
        "ranking": ranking_stage,
        "evaluation": _stage("evaluation", evaluation.create_pipeline(models=ALL_MODELS)),
        "candidate_export": _stage("candidate_export", candidate_export.create_pipeline(models=ALL_MODELS)),
        "covisitation_otto": covisitation_otto,
        "dgsr_otto": dgsr_otto,
        "rerank_otto": rerank_otto,
        "tuning": pipeline(
            tuning.create_pipeline(), namespace="tuning", prefix_datasets_with_namespace=False
        ),
        "tune_dgsr": tune_dgsr,
        "dgsr_before_training": dgsr_otto - dgsr_otto.from_nodes("dgsr_training.train_dgsr"),
        "dgsr_after_training": dgsr_otto.from_nodes("dgsr_training.train_dgsr")
        - dgsr_otto.only_nodes("dgsr_training.train_dgsr"),
        "__default__": dgsr_otto,
    }
