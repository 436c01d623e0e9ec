"""Validation without leakage and one prefix policy: what the training graph and samples may contain."""

from __future__ import annotations

import numpy as np
import polars as pl

from gnn_recsys.data.synthetic import SyntheticConfig, synthetic_events
from gnn_recsys.graph.sampler import TemporalSubgraphSampler
from gnn_recsys.graph.temporal_graph import build_temporal_graph
from gnn_recsys.loader.samples import SampleConfig, hold_out_validation, make_samples


def _events() -> pl.DataFrame:
    return synthetic_events(
        SyntheticConfig(num_items=150, num_train_sessions=300, num_test_sessions=0, seed=5)
    )


def test_validation_sessions_are_capped_by_max_val_sessions() -> None:
    events = _events()
    none = np.zeros(0, dtype=np.int64)
    uncapped = hold_out_validation(events, none, SampleConfig(val_fraction=0.2, max_val_sessions=None))[1]
    capped_visible, capped = hold_out_validation(
        events, none, SampleConfig(val_fraction=0.2, max_val_sessions=7)
    )
    assert uncapped.height == int(events["session"].n_unique() * 0.2) > 7
    assert capped.height == 7
    # only the 7 capped sessions lose events: everything of the others stays visible
    assert capped_visible.height == events.height - (
        events.join(capped.select("session", "cut_ts"), on="session")
        .filter(pl.col("ts") >= pl.col("cut_ts"))
        .height
    )


def test_validation_sessions_are_cut_and_their_later_events_are_invisible_to_training() -> None:
    events = _events()
    test_sessions = events["session"].unique().sort().to_numpy()[:30]  # as the local test split's prefixes
    config = SampleConfig(val_fraction=0.2, seed=3, test_prefixes_as_targets=False)
    visible, targets = hold_out_validation(events, test_sessions, config)

    assert targets.height == int((events["session"].n_unique() - 30) * 0.2)
    assert not set(targets["session"]) & set(test_sessions)
    # Every target event is a real event with an earlier event strictly before it ...
    joined = targets.join(events.rename({"ts": "cut_ts"}), on=["session", "cut_ts", "aid", "type"])
    assert joined["session"].n_unique() == targets.height
    first = events.group_by("session").agg(first_ts=pl.col("ts").min())
    assert (targets.join(first, on="session")["cut_ts"] > targets.join(first, on="session")["first_ts"]).all()
    # ... and nothing of a validation session from its cut on is visible; everything else is.
    cut = visible.join(targets.select("session", "cut_ts"), on="session")
    assert (cut["ts"] <= cut["cut_ts"]).all()
    untouched = ~pl.col("session").is_in(targets["session"].to_list())
    assert visible.filter(untouched).equals(
        events.filter(untouched).sort(["session", "ts"], maintain_order=True)
    )

    graph = build_temporal_graph(visible)
    train, val = make_samples(graph, test_sessions, targets, config)
    # No training sample comes from a validation or (policy "neither") a local test session ...
    train_ids = set(np.asarray(graph.session_id)[train.session].tolist())
    assert not train_ids & set(targets["session"]) and not train_ids & set(test_sessions.tolist())
    # ... while with the default policy "both" the local test prefixes are targets, validation never.
    both = make_samples(graph, test_sessions, targets, SampleConfig(val_fraction=0.2, seed=3))[0]
    both_ids = set(np.asarray(graph.session_id)[both.session].tolist())
    assert set(test_sessions.tolist()) <= both_ids and not both_ids & set(targets["session"])
    assert both_ids - train_ids == set(test_sessions.tolist())
    # ... and no training subgraph, through any hop or context window, reaches a hidden event.
    sampler = TemporalSubgraphSampler(graph, 50, 200, 2, context_window=(5, 5))
    sub = sampler.sample(train.session, train.cut_ts)
    cut_of = dict(zip(targets["session"], targets["cut_ts"], strict=True))
    reached = np.concatenate(
        [h.event for h in sub.hops] + [h.context[h.context >= 0] for h in sub.hops if h.context is not None]
    )
    sessions = np.asarray(graph.session_id)[graph.ev_session()[reached]]
    ts = np.asarray(graph.ev_ts)[reached]
    assert not any(
        s in cut_of and t >= cut_of[s] for s, t in zip(sessions.tolist(), ts.tolist(), strict=True)
    )
    # Validation samples predict exactly the held-out events.
    assert np.array_equal(np.asarray(graph.session_id)[val.session], targets["session"].to_numpy())
    assert np.array_equal(np.asarray(graph.item_aid)[val.target], targets["aid"].to_numpy())
    assert np.array_equal(val.cut_ts, targets["cut_ts"].to_numpy())


def test_the_same_seed_gives_the_same_split() -> None:
    events = _events()
    a = hold_out_validation(events, np.array([], dtype=np.int64), SampleConfig(seed=1))[1]
    b = hold_out_validation(events, np.array([], dtype=np.int64), SampleConfig(seed=1))[1]
    c = hold_out_validation(events, np.array([], dtype=np.int64), SampleConfig(seed=2))[1]
    assert a.equals(b) and not a.equals(c)
