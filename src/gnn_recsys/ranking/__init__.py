"""Ranking stage: candidates from every source, features, a learning-to-rank model per type.

Plain library code (no Kedro): ``candidates`` (candidate union, labels, the oracle ceiling),
``features`` (the feature table), ``ranker`` (LightGBM LambdaRank with the blend fallback, the rank
fusion), ``plots`` (report figures).  ``docs/ranking.md`` describes the training timeline (cross-fitting on the local test sessions).
"""

from gnn_recsys.ranking.candidates import CandidateConfig, attach_labels, candidate_ceiling
from gnn_recsys.ranking.features import build_features, feature_columns
from gnn_recsys.ranking.ranker import (
    RankerConfig,
    cross_fit_rerank,
    fusion_candidates,
    rerank,
    train_ranker,
)

__all__ = [
    "CandidateConfig",
    "RankerConfig",
    "attach_labels",
    "build_features",
    "candidate_ceiling",
    "cross_fit_rerank",
    "feature_columns",
    "fusion_candidates",
    "rerank",
    "train_ranker",
]
