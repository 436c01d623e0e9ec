"""DDP training: sharding, refused configs, and two gloo processes under torchrun against one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from gnn_recsys.data.synthetic import SyntheticConfig, synthetic_events
from gnn_recsys.graph.sampler import training_sample_events
from gnn_recsys.graph.temporal_graph import build_temporal_graph
from gnn_recsys.loader import SampleSet
from gnn_recsys.pipelines.training.nodes import load_dgsr
from gnn_recsys.training import CHECKPOINT_FILE, FitConfig, train_dgsr
from gnn_recsys.training.ddp import World, check_config, init_from_torchrun, shard_order
from gnn_recsys.training.distributed import load_params

SRC = Path(__file__).resolve().parents[1] / "src"

#: Float sums in another order (a per-rank mean of 64 then the mean of two ranks, instead of a mean of
#: 128; all-reduced gradients) differ in the last bits: after three epochs of Adam the weights differed
#: by at most 4.2e-7 (measured); the loss and weights must agree to 1e-5 (relative and absolute).
TOLERANCE = 1e-5


def test_shards_are_disjoint_equal_and_interleave_to_the_global_batches() -> None:
    order = np.random.default_rng(0).permutation(103)
    world = World(0, 4)
    shards = [shard_order(order, World(rank, 4)) for rank in range(4)]
    assert {len(s) for s in shards} == {25}  # 103 cut to 100: the same number of batches per rank
    together = np.concatenate(shards)
    assert len(np.unique(together)) == 100 and set(together) <= set(order[:100])
    # batch i of every rank with a per-rank batch of 5 = batch i of one process with a batch of 20
    for i in range(5):
        union = np.concatenate([s[i * 5 : (i + 1) * 5] for s in shards])
        assert set(union) == set(order[i * 20 : (i + 1) * 20])
    assert shard_order(order, World()) is order and world.main


def test_sparse_embedding_is_refused_under_ddp() -> None:
    check_config(True, World())  # one process: fine
    check_config(False, World(1, 2))
    with pytest.raises(ValueError, match="sparse_embedding cannot train under DistributedDataParallel"):
        check_config(True, World(1, 2))


def test_more_processes_than_gpus_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """``torchrun --nproc_per_node=3`` on a machine of 2 GPUs: the third process says why, before CUDA."""
    env = {"RANK": "2", "WORLD_SIZE": "3", "LOCAL_RANK": "2", "LOCAL_WORLD_SIZE": "3"}
    for name, value in {**env, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29999"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", lambda _: pytest.fail("must refuse before set_device"))
    with pytest.raises(RuntimeError, match=r"process 2 of 3 .* 2 GPU\(s\) .* --nproc_per_node=2 or fewer"):
        init_from_torchrun("cuda")
    assert not torch.distributed.is_initialized()


def test_params_overrides_are_typed_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "p.yml"
    path.write_text(yaml.safe_dump({"dgsr": {"train": {"max_epochs": 30}}}))
    params = load_params(path, ["train.max_epochs=2", "loss.kind=full", "model.context_window=[1, 1]"])
    assert params["train"]["max_epochs"] == 2 and params["loss"]["kind"] == "full"
    assert params["model"]["context_window"] == [1, 1]
    with pytest.raises(ValueError, match="SECTION.KEY=VALUE"):
        load_params(path, ["max_epochs=2"])


@pytest.mark.slow
def test_two_gloo_processes_train_like_one_process_with_the_double_batch(tmp_path: Path) -> None:
    """torchrun, 2 CPU ranks x batch 64 == 1 process x batch 128 (exact-able: full softmax, no dropout)."""
    events = synthetic_events(
        SyntheticConfig(num_items=150, num_train_sessions=100, num_test_sessions=0, seed=5)
    )
    graph = build_temporal_graph(events)
    samples = SampleSet.from_events(graph, training_sample_events(graph))  # typed, as the pipeline's
    val_rows = np.zeros(len(samples), dtype=bool)
    val_rows[np.random.default_rng(0).choice(len(samples), 100, replace=False)] = True
    train, val = samples.subset(~val_rows), samples.subset(val_rows)
    train = train.subset(slice(0, len(train) - len(train) % 2))  # even: no sample left out by sharding
    graph.save(tmp_path / "graph")
    train.to_frame().write_parquet(tmp_path / "train.parquet")
    val.to_frame().write_parquet(tmp_path / "val.parquet")

    config = FitConfig().with_(
        model={"embedding_dim": 16, "item_max_length": 6, "user_max_length": 4, "dropout": 0.0},
        loss={"kind": "full"},
        train={
            "batch_size": 64,
            "max_epochs": 3,
            "samples_per_epoch": None,
            "warmup_steps": 0,
            "patience": 5,
            "lr": 1e-2,
            "progress": False,
            "seed": 7,
            "device": "cpu",
        },
        loader={"num_workers": 0},
    )
    (tmp_path / "params.yml").write_text(yaml.safe_dump({"dgsr": config.to_dict()}))
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}

    def torchrun(max_epochs: int) -> list[int]:
        """Launch 2 ranks; the epochs reported on stdout (once each: rank 0 only)."""
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--standalone",
                "--nproc_per_node=2",
                "-m",
                "gnn_recsys.training.distributed",
                "--set",
                f"train.max_epochs={max_epochs}",
                "--graph",
                str(tmp_path / "graph"),
                "--params",
                str(tmp_path / "params.yml"),
                "--train-samples",
                str(tmp_path / "train.parquet"),
                "--val-samples",
                str(tmp_path / "val.parquet"),
                "--checkpoint-dir",
                str(tmp_path / "ckpt"),
                "--model",
                str(tmp_path / "model.pt"),
                "--history",
                str(tmp_path / "history.json"),
            ],
            env=env,
            check=False,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert run.returncode == 0, run.stderr[:3000] + "\n...\n" + run.stderr[-3000:]
        return [json.loads(line)["epoch"] for line in run.stdout.splitlines() if line.startswith('{"epoch"')]

    # two epochs, then a resumed third: every rank restores its own random streams from rank 0's file
    assert torchrun(2) == [1, 2]
    assert torchrun(3) == [3]
    checkpoint = torch.load(tmp_path / "ckpt" / CHECKPOINT_FILE, weights_only=True)
    assert len(checkpoint["rank_rng"]) == 2 and checkpoint["progress"]["epoch"] == 3
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == [CHECKPOINT_FILE]
    history = json.loads((tmp_path / "history.json").read_text())
    ddp_model = load_dgsr(torch.load(tmp_path / "model.pt", weights_only=True))

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one = train_dgsr(graph, train, val, config.with_(train={"batch_size": 128}))
    finally:
        torch.set_num_threads(before)
    assert len(history["epochs"]) == len(one.history) == 3
    for ddp_epoch, one_epoch in zip(history["epochs"], one.history, strict=True):
        assert ddp_epoch["train_loss"] == pytest.approx(one_epoch["train_loss"], rel=TOLERANCE)
        # recall: the same hits unless a score within the tolerance sits on the top-20 boundary
        assert abs(ddp_epoch["val_recall@20"] - one_epoch["val_recall@20"]) <= 1 / len(val) + 1e-12
    assert history["epochs"][-1]["train_loss"] < history["epochs"][0]["train_loss"]  # it learnt
    assert history["best_epoch"] == one.best_epoch and history["start_epoch"] == 3
    one_state = one.model.state_dict()
    for name, tensor in ddp_model.state_dict().items():
        torch.testing.assert_close(tensor, one_state[name], rtol=TOLERANCE, atol=TOLERANCE, msg=name)
