"""The synthetic OTTO generator: exact file format, determinism, and the planted shopping structure."""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import orjson
import polars as pl
import pytest

from gnn_recsys.data.schema import (
    CART,
    CLICK,
    EVENT_SCHEMA,
    EVENT_TYPE_CODES,
    MS_PER_DAY,
    ORDER,
    OTTO_TRAIN_START_MS,
)
from gnn_recsys.data.synthetic import (
    SyntheticConfig,
    build_item_catalog,
    synthetic_events,
    write_synthetic_otto,
)
from gnn_recsys.data.validation import check_event_table

# Small, but several chunks per split so chunk boundaries are exercised.
SMALL = SyntheticConfig(
    num_items=600, num_train_sessions=3_000, num_test_sessions=700, seed=7, chunk_sessions=1_100
)
OTTO_LINE = re.compile(
    rb'\{"session":\d+,"events":\[\{"aid":\d+,"ts":\d+,"type":"(clicks|carts|orders)"\}'
    rb'(,\{"aid":\d+,"ts":\d+,"type":"(clicks|carts|orders)"\})*\]\}'
)


def _parse_jsonl(path: Path) -> pl.DataFrame:
    """Reference reader (independent of the ingest module): one row per event, file order."""
    rows: dict[str, list[int]] = {"session": [], "aid": [], "ts": [], "type": []}
    for line in path.read_bytes().splitlines():
        obj = orjson.loads(line)
        for event in obj["events"]:
            rows["session"].append(obj["session"])
            rows["aid"].append(event["aid"])
            rows["ts"].append(event["ts"])
            rows["type"].append(EVENT_TYPE_CODES[event["type"]])
    return pl.DataFrame(rows, schema=EVENT_SCHEMA)


@pytest.fixture(scope="module")
def small_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, float]]:
    folder = tmp_path_factory.mktemp("synthetic")
    counts = write_synthetic_otto(folder / "train.jsonl", folder / "test.jsonl", SMALL)
    return folder / "train.jsonl", folder / "test.jsonl", counts


@pytest.fixture(scope="module")
def train(small_files: tuple[Path, Path, dict[str, float]]) -> pl.DataFrame:
    return _parse_jsonl(small_files[0])


@pytest.fixture(scope="module")
def test_prefixes(small_files: tuple[Path, Path, dict[str, float]]) -> pl.DataFrame:
    return _parse_jsonl(small_files[1])


def _lengths(events: pl.DataFrame) -> np.ndarray:
    return events.group_by("session", maintain_order=True).len()["len"].to_numpy()


def test_every_line_has_the_exact_otto_layout(small_files: tuple[Path, Path, dict[str, float]]) -> None:
    for path in small_files[:2]:
        lines = path.read_bytes().split(b"\n")
        assert lines[-1] == b"", "file ends with a newline"
        assert all(OTTO_LINE.fullmatch(line) for line in lines[:-1])


def test_files_match_in_memory_events_and_counts(
    small_files: tuple[Path, Path, dict[str, float]], train: pl.DataFrame, test_prefixes: pl.DataFrame
) -> None:
    assert train.equals(synthetic_events(SMALL, "train"))
    assert test_prefixes.equals(synthetic_events(SMALL, "test"))
    counts = small_files[2]
    assert counts["train_events"] == train.height
    assert counts["test_events"] == test_prefixes.height
    assert counts["train_sessions"] == SMALL.num_train_sessions
    assert counts["train_carts"] == (train["type"] == CART).sum()
    assert counts["test_orders"] == (test_prefixes["type"] == ORDER).sum()


def test_tables_follow_the_event_contract(train: pl.DataFrame, test_prefixes: pl.DataFrame) -> None:
    check_event_table(train, "train")
    check_event_table(test_prefixes, "test")


def test_same_seed_same_bytes_other_seed_other_bytes(
    tmp_path: Path, small_files: tuple[Path, Path, dict[str, float]]
) -> None:
    def digest(path: Path) -> str:
        return hashlib.sha256(path.read_bytes()).hexdigest()

    write_synthetic_otto(tmp_path / "a.jsonl", tmp_path / "b.jsonl", SMALL)
    assert digest(tmp_path / "a.jsonl") == digest(small_files[0])
    assert digest(tmp_path / "b.jsonl") == digest(small_files[1])
    other = SyntheticConfig(**{**SMALL.__dict__, "seed": 8})
    write_synthetic_otto(tmp_path / "c.jsonl", tmp_path / "d.jsonl", other)
    assert digest(tmp_path / "c.jsonl") != digest(small_files[0])


def test_session_ids_lengths_and_time_windows(train: pl.DataFrame, test_prefixes: pl.DataFrame) -> None:
    n_train = SMALL.num_train_sessions
    train_ids = train["session"].unique(maintain_order=True).to_numpy()
    test_ids = test_prefixes["session"].unique(maintain_order=True).to_numpy()
    np.testing.assert_array_equal(train_ids, np.arange(n_train))
    np.testing.assert_array_equal(test_ids, np.arange(n_train, n_train + SMALL.num_test_sessions))

    lengths = _lengths(train)
    assert lengths.min() >= 2
    assert lengths.max() <= 500
    assert lengths.max() >= 8 * np.median(lengths), "session lengths are heavy-tailed"

    train_end = OTTO_TRAIN_START_MS + 28 * MS_PER_DAY
    assert train["ts"].min() >= OTTO_TRAIN_START_MS
    assert train["ts"].max() < train_end
    assert test_prefixes["ts"].min() >= train_end
    assert test_prefixes["ts"].max() < train_end + 7 * MS_PER_DAY


def test_test_sessions_are_random_prefixes(train: pl.DataFrame, test_prefixes: pl.DataFrame) -> None:
    test_lengths = _lengths(test_prefixes)
    assert test_lengths.min() == 1, "1-event test sessions exist, as in the Kaggle file"
    assert (test_lengths == 1).mean() > 0.1
    assert test_lengths.mean() < 0.8 * _lengths(train).mean()


def test_funnel_proportions_and_first_event_is_a_click(train: pl.DataFrame) -> None:
    share = np.bincount(train["type"].to_numpy(), minlength=3) / train.height
    assert 0.86 < share[CLICK] < 0.94
    assert 0.05 < share[CART] < 0.11
    assert 0.01 < share[ORDER] < 0.04
    first = train.group_by("session", maintain_order=True).first()
    assert (first["type"] == CLICK).all()


def test_carts_follow_clicks_and_orders_follow_carts(train: pl.DataFrame) -> None:
    # reference check with a plain loop: every cart is of an item clicked earlier in the session,
    # every order takes an item out of the session's cart
    clicked: dict[int, set[int]] = defaultdict(set)
    in_cart: dict[int, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for session, aid, kind in train.select("session", "aid", "type").iter_rows():
        if kind == CLICK:
            clicked[session].add(aid)
        elif kind == CART:
            assert aid in clicked[session]
            in_cart[session][aid] += 1
        else:
            assert in_cart[session][aid] > 0
            in_cart[session][aid] -= 1


def test_timestamps_have_short_long_and_identical_gaps(train: pl.DataFrame) -> None:
    same = train["session"].to_numpy()[1:] == train["session"].to_numpy()[:-1]
    gaps = np.diff(train["ts"].to_numpy())[same]
    assert gaps.min() >= 0
    assert 0.005 < (gaps == 0).mean() < 0.2
    assert 5_000 < np.median(gaps) < 120_000, "median gap of seconds, not ms or hours"
    assert (gaps > 3_600_000).mean() > 0.005, "some pauses of more than an hour"
    orders = train.with_columns(prev_type=pl.col("type").shift(1), gap=pl.col("ts").diff()).filter(
        (pl.col("type") == ORDER) & (pl.col("prev_type") == ORDER) & (pl.col("session").diff() == 0)
    )
    assert orders.height > 0
    assert (orders["gap"] == 0).mean() > 0.5, "checkouts order several items in the same millisecond"


def test_next_click_is_mostly_a_related_item(train: pl.DataFrame) -> None:
    catalog = build_item_catalog(SMALL)
    clicks = train.filter(pl.col("type") == CLICK)
    aid, session = clicks["aid"].to_numpy(), clicks["session"].to_numpy()
    same = session[1:] == session[:-1]
    src, dst = aid[:-1][same], aid[1:][same]
    related_rate = catalog.is_related(src, dst).mean()
    shuffled = np.random.default_rng(0).permutation(dst)
    chance_rate = catalog.is_related(src, shuffled).mean()
    assert related_rate > 0.4
    assert related_rate > 15 * chance_rate


def test_catalog_structure(train: pl.DataFrame) -> None:
    catalog = build_item_catalog(SMALL)
    items = np.arange(SMALL.num_items)
    assert ((catalog.num_related >= 3) & (catalog.num_related <= 5)).all()
    assert not (catalog.related == items[:, None]).any(), "no item is related to itself"
    same_category = catalog.category[catalog.related] == catalog.category[:, None]
    assert same_category.mean() > 0.98
    # heavy-tailed popularity: the top 10 % of items draw a third of all events, the lower half little
    counts = np.sort(np.bincount(train["aid"].to_numpy(), minlength=SMALL.num_items))[::-1]
    assert counts[: SMALL.num_items // 10].sum() > 0.3 * counts.sum()
    assert counts[SMALL.num_items // 2 :].sum() < 0.25 * counts.sum()


def test_default_config_is_the_small_project_run(tmp_path: Path) -> None:
    counts = write_synthetic_otto(tmp_path / "train.jsonl", tmp_path / "test.jsonl")
    assert counts["train_sessions"] == 20_000
    assert counts["test_sessions"] == 4_000
    assert counts["num_items"] == 4_000
    assert 250_000 <= counts["train_events"] <= 400_000
    assert counts["train_bytes"] == (tmp_path / "train.jsonl").stat().st_size


def test_otto_scale_sizes_and_session_length() -> None:
    config = SyntheticConfig.otto_scale(seed=3)
    assert (config.num_items, config.num_train_sessions, config.num_test_sessions) == (
        1_855_603,
        12_899_779,
        1_671_803,
    )
    assert config.seed == 3
    # same behaviour at a size a test can afford: OTTO's train file has 216.7M / 12.9M = 16.8 events/session
    small = SyntheticConfig.otto_scale(num_items=5_000, num_train_sessions=20_000, num_test_sessions=0)
    events = synthetic_events(small, "train")
    assert 15.5 < events.height / small.num_train_sessions < 18.2


def test_invalid_configs_are_rejected() -> None:
    with pytest.raises(ValueError, match="min_length"):
        SyntheticConfig(min_length=1)
    with pytest.raises(ValueError, match="p_repeat"):
        SyntheticConfig(p_repeat=0.5, p_related=0.6)
