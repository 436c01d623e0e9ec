"""Full-catalogue top-K inference with a trained DGSR."""

from gnn_recsys.inference.recommend import (
    InferenceConfig,
    encode_sessions,
    recall_at_k,
    recommend,
    recommend_by_type,
)

__all__ = ["InferenceConfig", "encode_sessions", "recall_at_k", "recommend", "recommend_by_type"]
