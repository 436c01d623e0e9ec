"""A learning-to-rank model per target type over the candidate feature table.

For each type (clicks, carts, orders) a LightGBM LambdaRank model is trained on the (session, type)
lists that hold at least one label, grouped by session, with early stopping on held-out sessions.
Two simpler scorers compete with it on those held-out sessions and the best one is kept, so the
trained model never ranks worse there than what it is meant to improve on:

* the untrained reciprocal-rank fusion (``fusion_score``, the ranker's floor);
* a *blend*: ``sum over sources of w / (offset + rank)`` with the weights chosen on the training
  sessions by recall@20.  With too few labelled sessions for LightGBM (``min_train_sessions``) the
  blend, learned on every labelled session there is, is the model: small data gives a sensible
  ranking instead of a failure.

The fitted model is plain data (a LightGBM model string or blend weights per type): it is stored as
JSON (nothing to unpickle) and logs to MLflow without custom classes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import lightgbm as lgb
import numpy as np
import polars as pl

from gnn_recsys.data.schema import EVENT_TYPE_CODES
from gnn_recsys.ranking.candidates import ranked_candidates
from gnn_recsys.ranking.features import feature_columns

logger = logging.getLogger(__name__)

RECALL_K = 20


def _default_lgbm() -> dict[str, Any]:
    return {
        "objective": "lambdarank",
        "metric": "ndcg",
        "eval_at": [RECALL_K],
        "learning_rate": 0.05,
        "num_leaves": 31,
        "min_data_in_leaf": 20,
        "feature_fraction": 0.8,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "lambdarank_truncation_level": 25,
        "num_threads": 2,
        "verbosity": -1,
    }


@dataclass(frozen=True)
class RankerConfig:
    """Training options (``conf/base/parameters_ranking.yml``, ``ranking.ranker``)."""

    num_boost_round: int = 500
    early_stopping_rounds: int = 30
    valid_fraction: float = 0.2
    min_train_sessions: int = 200
    negatives_per_session: int | None = None
    output_k: int = 50
    refit_full: bool = True
    cross_fit_folds: int = 3
    seed: int = 42
    lgbm: Mapping[str, Any] = field(default_factory=_default_lgbm)

    def __post_init__(self) -> None:
        if not 0.0 < self.valid_fraction < 1.0:
            raise ValueError(f"RankerConfig.valid_fraction must be in (0, 1), got {self.valid_fraction}")
        if self.num_boost_round < 1 or self.output_k < 1 or self.min_train_sessions < 1:
            raise ValueError("RankerConfig: num_boost_round, output_k and min_train_sessions must be >= 1")
        if self.cross_fit_folds < 2:
            raise ValueError(f"RankerConfig.cross_fit_folds must be >= 2, got {self.cross_fit_folds}")

    @classmethod
    def from_dict(cls, params: Mapping[str, Any]) -> RankerConfig:
        options = dict(params)
        options["lgbm"] = _default_lgbm() | dict(options.get("lgbm") or {})
        return cls(**options)


def recall_at_k(frame: pl.DataFrame, score: str, k: int = RECALL_K) -> float | None:
    """Official recall@k of one type's lists ranked by ``score``; None without labelled lists.

    ``frame`` holds ``session, aid, target, n_true`` rows of one type; the denominator counts every
    label (``min(k, n_true)``), also those the candidates miss.
    """
    labelled = frame.filter(pl.col("n_true") > 0)
    if labelled.height == 0:
        return None
    ranked = labelled.sort(["session", score, "aid"], descending=[False, True, False]).with_columns(
        pl.int_range(1, pl.len() + 1).over("session").alias("_rank")
    )
    per_session = ranked.group_by("session").agg(
        (pl.col("target").cast(pl.Int64) * (pl.col("_rank") <= k)).sum().alias("hits"),
        pl.col("n_true").first().clip(upper_bound=k).alias("denominator"),
    )
    return float(per_session["hits"].sum()) / float(per_session["denominator"].sum())


def _blend_expr(weights: Mapping[str, float], offset: float) -> pl.Expr:
    score = pl.lit(0.0, pl.Float64)
    for name, weight in weights.items():
        score = score + (weight / (offset + pl.col(f"{name}_rank").cast(pl.Float64))).fill_null(0.0)
    return score


def _history_tiebreak() -> pl.Expr:
    # Among items no list ranks, recent session items first: a small bonus below any list's score.
    return (1e-6 / (1.0 + pl.col("events_since_last").cast(pl.Float64))).fill_null(0.0)


def blend_score(frame: pl.DataFrame, weights: Mapping[str, float], offset: float) -> pl.Series:
    """The blend's score of every row (``sum of w / (offset + rank)`` plus a recency tie-break)."""
    return frame.select((_blend_expr(weights, offset) + _history_tiebreak()).alias("score"))["score"]


def _weight_grid(sources: Sequence[str], default: Mapping[str, float]) -> list[dict[str, float]]:
    """Candidate blend weights: the default fusion, and a 1-D grid when there are two sources."""
    grid = [{name: float(default.get(name, 1.0)) for name in sources}]
    if len(sources) == 2:
        a, b = sources
        grid += [{a: float(w), b: float(1.0 - w)} for w in np.linspace(0.0, 1.0, 21)]
    elif len(sources) == 1:
        grid = [{sources[0]: 1.0}]
    return grid


def fit_blend(
    frame: pl.DataFrame, sources: Sequence[str], default: Mapping[str, float], offset: float
) -> tuple[dict[str, float], float | None]:
    """Blend weights with the best recall@20 on ``frame`` (the default fusion when nothing is labelled)."""
    best_weights = {name: float(default.get(name, 1.0)) for name in sources}
    best = None
    for weights in _weight_grid(sources, default):
        recall = recall_at_k(
            frame.with_columns(blend_score(frame, weights, offset).alias("_blend")), "_blend"
        )
        if recall is not None and (best is None or recall > best + 1e-12):
            best, best_weights = recall, weights
    return best_weights, best


def _split_sessions(sessions: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of held-out sessions (seeded, at least one session on each side when possible)."""
    rng = np.random.default_rng(seed)
    n_valid = int(round(len(sessions) * fraction))
    n_valid = min(max(n_valid, 1), len(sessions) - 1) if len(sessions) >= 2 else 0
    mask = np.zeros(len(sessions), dtype=bool)
    mask[rng.choice(len(sessions), size=n_valid, replace=False)] = True
    return mask


def _sample_negatives(frame: pl.DataFrame, per_session: int | None, seed: int) -> pl.DataFrame:
    if per_session is None:
        return frame
    rng_key = (pl.col("aid").hash(seed) ^ pl.col("session").hash(seed + 1)).alias("_r")
    return (
        frame.with_columns(rng_key)
        .filter((pl.col("target") == 1) | (pl.col("_r").rank("ordinal").over("session") <= per_session))
        .drop("_r")
    )


def _group_sizes(frame: pl.DataFrame) -> np.ndarray:
    session = frame["session"].to_numpy()
    if session.size == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, session[1:] != session[:-1]])
    return np.diff(np.r_[starts, session.size])


def train_ranker(
    table: pl.DataFrame,
    sources: Sequence[str],
    fusion_weights: Mapping[str, float],
    fusion_offset: float,
    config: RankerConfig | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train one scorer per type on a labelled feature table (:func:`attach_labels` output).

    Returns ``(model, report)``: ``model`` maps each type name to ``{"kind": "lightgbm", "model":
    model string, "features": [...]}`` or ``{"kind": "blend" | "fusion", "weights": {...}}``;
    ``report`` holds per type the held-out recall@20 of every contender, the chosen kind, the
    validation curve and the feature importance (gain).
    """
    config = RankerConfig() if config is None else config
    features = feature_columns(table)
    model: dict[str, Any] = {
        "features": features,
        "sources": list(sources),
        "offset": fusion_offset,
        "types": {},
    }
    report: dict[str, Any] = {}
    for type_name, code in EVENT_TYPE_CODES.items():
        rows = table.filter((pl.col("type") == code) & (pl.col("n_true") > 0)).sort(["session", "aid"])
        sessions = rows["session"].unique().sort().to_numpy()
        held_out = _split_sessions(sessions, config.valid_fraction, config.seed + code)
        is_valid = pl.col("session").is_in(pl.Series(sessions[held_out], dtype=pl.Int32))
        train_rows, valid_rows = rows.filter(~is_valid), rows.filter(is_valid)
        # lists without a positive candidate teach LambdaRank nothing
        positive = (
            train_rows.group_by("session").agg(pl.col("target").max().alias("_p")).filter(pl.col("_p") == 1)
        )
        learnable = train_rows.filter(pl.col("session").is_in(positive["session"].implode()))
        n_learnable = positive.height
        entry: dict[str, Any] = {
            "labelled_sessions": int(len(sessions)),
            "train_sessions_with_positive": int(n_learnable),
            "valid_sessions": int(held_out.sum()),
        }
        if n_learnable < config.min_train_sessions or valid_rows.height == 0:
            weights, recall = fit_blend(rows, sources, fusion_weights, fusion_offset)
            model["types"][type_name] = {"kind": "blend", "weights": weights}
            entry |= {"chosen": "blend", "reason": f"{n_learnable} < min_train_sessions {config.min_train_sessions}",
                      "recall_blend_all": recall, "weights": weights}  # fmt: skip
            logger.info(
                "ranker %s: too few labelled sessions (%d); blend %s", type_name, n_learnable, weights
            )
            report[type_name] = entry
            continue

        sampled = _sample_negatives(learnable, config.negatives_per_session, config.seed).sort(
            ["session", "aid"]
        )
        valid_learnable = valid_rows.filter(
            pl.col("session").is_in(
                valid_rows.group_by("session")
                .agg(pl.col("target").max().alias("_p"))
                .filter(pl.col("_p") == 1)["session"]
                .implode()
            )
        )
        params = dict(config.lgbm) | {"seed": config.seed, "deterministic": True, "force_row_wise": True}
        dtrain = lgb.Dataset(
            sampled.select(features).to_numpy().astype(np.float32),
            label=sampled["target"].to_numpy(),
            group=_group_sizes(sampled),
            feature_name=features,
            free_raw_data=True,
        )
        curves: dict[str, dict[str, list[float]]] = {}
        valid_sets, valid_names = [dtrain], ["train"]
        callbacks = [lgb.record_evaluation(curves)]
        if valid_learnable.height:
            dvalid = lgb.Dataset(
                valid_learnable.select(features).to_numpy().astype(np.float32),
                label=valid_learnable["target"].to_numpy(),
                group=_group_sizes(valid_learnable),
                reference=dtrain,
            )
            valid_sets.append(dvalid)
            valid_names.append("valid")
            callbacks.append(lgb.early_stopping(config.early_stopping_rounds, verbose=False))
        booster = lgb.train(
            params, dtrain, num_boost_round=config.num_boost_round, valid_sets=valid_sets,
            valid_names=valid_names, callbacks=callbacks,
        )  # fmt: skip
        best_iteration = booster.best_iteration or booster.current_iteration()
        lgbm_scores = booster.predict(
            valid_rows.select(features).to_numpy().astype(np.float32), num_iteration=best_iteration
        )
        weights, _ = fit_blend(train_rows, sources, fusion_weights, fusion_offset)
        scored = valid_rows.with_columns(
            pl.Series("_lgbm", lgbm_scores, dtype=pl.Float64),
            blend_score(valid_rows, weights, fusion_offset).alias("_blend"),
            (pl.col("fusion_score").cast(pl.Float64) + _history_tiebreak()).alias("_fusion"),
        )
        contenders = {"lightgbm": recall_at_k(scored, "_lgbm"), "blend": recall_at_k(scored, "_blend"),
                      "fusion": recall_at_k(scored, "_fusion")}  # fmt: skip
        chosen = max(contenders, key=lambda name: (contenders[name] or 0.0, name == "lightgbm"))
        importance = dict(
            zip(
                features,
                booster.feature_importance(importance_type="gain", iteration=best_iteration).tolist(),
                strict=True,
            )
        )
        entry |= {
            "chosen": chosen,
            "valid_recall": contenders,
            "best_iteration": int(best_iteration),
            "weights": weights,
            "curve": {
                name: {metric: list(map(float, values)) for metric, values in per.items()}
                for name, per in curves.items()
            },
            "importance_gain": importance,
        }
        if chosen == "lightgbm" and config.refit_full and valid_learnable.height:
            # the held-out sessions chose the model and its length; now let it learn from them too
            everything = pl.concat([sampled, _sample_negatives(valid_learnable, config.negatives_per_session,
                                                               config.seed)]).sort(["session", "aid"])  # fmt: skip
            booster = lgb.train(
                params,
                lgb.Dataset(
                    everything.select(features).to_numpy().astype(np.float32),
                    label=everything["target"].to_numpy(),
                    group=_group_sizes(everything),
                    feature_name=features,
                ),
                num_boost_round=best_iteration,
            )
            entry["refit_sessions"] = int(everything["session"].n_unique())
        if chosen == "lightgbm":
            model["types"][type_name] = {
                "kind": "lightgbm",
                "model": booster.model_to_string(num_iteration=best_iteration),
            }
        elif chosen == "blend":
            model["types"][type_name] = {"kind": "blend", "weights": weights}
        else:
            model["types"][type_name] = {"kind": "fusion", "weights": dict(fusion_weights)}
        logger.info("ranker %s: held-out recall@20 %s -> %s (best iteration %d)", type_name,
                    {k: None if v is None else round(v, 4) for k, v in contenders.items()}, chosen, best_iteration)  # fmt: skip
        report[type_name] = entry
    return model, report


def score_rows(model: Mapping[str, Any], features: pl.DataFrame) -> pl.Series:
    """The fitted model's score of every row of a feature table (rows of each type by its own scorer)."""
    missing = [c for c in model["features"] if c not in features.columns]
    if missing:
        raise ValueError(f"ranker: the feature table lacks column(s) {missing} the model was trained on")
    scores = np.zeros(features.height, dtype=np.float64)
    type_code = features["type"].to_numpy()
    for type_name, code in EVENT_TYPE_CODES.items():
        rows = np.flatnonzero(type_code == code)
        if rows.size == 0:
            continue
        part = features[rows]
        scorer = model["types"].get(type_name, {"kind": "fusion", "weights": {}})
        if scorer["kind"] == "lightgbm":
            booster = lgb.Booster(model_str=scorer["model"])
            scores[rows] = booster.predict(part.select(model["features"]).to_numpy().astype(np.float32))
        elif scorer["kind"] == "blend":
            scores[rows] = blend_score(part, scorer["weights"], model["offset"]).to_numpy()
        else:
            scores[rows] = (
                part["fusion_score"].cast(pl.Float64) + part.select(_history_tiebreak())[:, 0]
            ).to_numpy()
    return pl.Series("score", scores)


def rerank(model: Mapping[str, Any], features: pl.DataFrame, k: int, name: str = "reranker") -> pl.DataFrame:
    """Typed candidates table: each (session, type) list ordered by the fitted model, top ``k``."""
    scored = features.select("session", "type", "aid").with_columns(score_rows(model, features))
    return ranked_candidates(scored, "score", name, k=k)


def session_folds(sessions: np.ndarray, num_folds: int, seed: int) -> np.ndarray:
    """Fold (``0..num_folds-1``) of each of the distinct ``sessions``: a seeded shuffle dealt round-robin,
    so fold sizes differ by at most one."""
    order = np.random.default_rng(seed).permutation(len(sessions))
    folds = np.empty(len(sessions), dtype=np.int64)
    folds[order] = np.arange(len(sessions)) % num_folds
    return folds


def cross_fit_rerank(
    table: pl.DataFrame,
    sources: Sequence[str],
    fusion_weights: Mapping[str, float],
    fusion_offset: float,
    config: RankerConfig | None = None,
    *,
    name: str = "reranker",
) -> tuple[pl.DataFrame, list[dict[str, Any]]]:
    """Out-of-fold reranked lists of a labelled feature table (:func:`attach_labels` output).

    The sessions are dealt into ``config.cross_fit_folds`` folds; each fold's lists are ordered by a
    ranker (:func:`train_ranker`) trained on the other folds only, so no session's list is ranked by a
    model that saw its labels. Returns the typed candidates (top ``config.output_k``) and, per fold,
    its sessions and each type's chosen scorer.
    """
    config = RankerConfig() if config is None else config
    sessions = table["session"].unique().sort().to_numpy()
    folds = session_folds(sessions, config.cross_fit_folds, config.seed)
    reranked, summary = [], []
    for fold in range(config.cross_fit_folds):
        held = pl.col("session").is_in(pl.Series(sessions[folds == fold], dtype=table["session"].dtype))
        model, report = train_ranker(
            table.filter(~held),
            sources,
            fusion_weights,
            fusion_offset,
            replace(config, seed=config.seed + fold),
        )
        reranked.append(rerank(model, table.filter(held), k=config.output_k, name=name))
        summary.append(
            {"fold": fold, "sessions": int((folds == fold).sum())}
            | {type_name: entry["chosen"] for type_name, entry in report.items()}
        )
        logger.info("ranker cross-fit fold %d: %s", fold, summary[-1])
    # the folds split the sessions, so each session's lists come whole from one fold
    return pl.concat(reranked).sort(["session", "type", "rank"]), summary


def fusion_candidates(features: pl.DataFrame, k: int, name: str = "fusion") -> pl.DataFrame:
    """The untrained reciprocal-rank fusion as a typed candidates table (recency breaks its ties)."""
    scored = features.select(
        "session",
        "type",
        "aid",
        (pl.col("fusion_score").cast(pl.Float64) + _history_tiebreak()).alias("score"),
    )
    return ranked_candidates(scored, "score", name, k=k)
