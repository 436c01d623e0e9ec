"""Train DGSR on several processes (one per GPU, or CPU processes) with ``torchrun``.

Reads what the Kedro pipeline wrote before its ``train_dgsr`` node (the training graph folder and the
sample parquet files) and writes what that node writes (the model file and the history JSON), so the
pipeline continues after it::

    kedro run --to-nodes make_dgsr_samples
    torchrun --nproc_per_node=2 -m gnn_recsys.training.distributed \\
        --set train.max_epochs=10
    kedro run --from-nodes dgsr_local_candidates,dgsr_test_candidates,log_dgsr_to_mlflow

``train.batch_size`` is per process: the global batch is ``nproc x batch_size``. Rank 0 writes the
checkpoint, the outputs and one JSON line per epoch on stdout; other ranks write nothing. Plain
``python -m gnn_recsys.training.distributed`` trains in one process.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from gnn_recsys.runtime import configure_threads

configure_threads()  # before torch starts its thread pool

import polars as pl  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

from gnn_recsys.graph.temporal_graph import TemporalGraph  # noqa: E402
from gnn_recsys.loader.samples import SampleSet  # noqa: E402
from gnn_recsys.training import ddp  # noqa: E402
from gnn_recsys.training.checkpoint import save_atomic  # noqa: E402
from gnn_recsys.training.config import FitConfig  # noqa: E402
from gnn_recsys.training.fit import train_dgsr, training_outputs  # noqa: E402

logger = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="torchrun --nproc_per_node=N -m gnn_recsys.training.distributed", description=__doc__
    )
    parser.add_argument("--graph", default="data/04_feature/dgsr_train_graph", help="graph folder (.npy)")
    parser.add_argument("--train-samples", default="data/05_model_input/dgsr_train_samples.parquet")
    parser.add_argument("--val-samples", default="data/05_model_input/dgsr_val_samples.parquet")
    parser.add_argument(
        "--params", default="conf/base/parameters_training.yml", help="YAML with a 'dgsr' key"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override a dgsr parameter (YAML value), e.g. train.max_epochs=5; repeatable",
    )
    parser.add_argument("--checkpoint-dir", default=None, help="default: dgsr.checkpoint_dir of --params")
    parser.add_argument("--model", default="data/06_models/dgsr_model.pt")
    parser.add_argument("--history", default="data/08_reporting/dgsr_training_history.json")
    return parser


def load_params(path: str | Path, overrides: list[str]) -> dict[str, Any]:
    """The ``dgsr`` parameters of ``path`` with ``section.key=value`` overrides applied."""
    with open(path) as handle:
        params = (yaml.safe_load(handle) or {}).get("dgsr")
    if not isinstance(params, dict):
        raise ValueError(f"{path}: no 'dgsr' mapping")
    for item in overrides:
        key, sep, value = item.partition("=")
        section, dot, name = key.partition(".")
        if not sep or not dot or not name:
            raise ValueError(f"--set {item!r}: expected SECTION.KEY=VALUE, e.g. train.max_epochs=5")
        params.setdefault(section, {})
        if not isinstance(params[section], dict):
            raise ValueError(f"--set {item!r}: dgsr.{section} is not a section")
        params[section][name] = yaml.safe_load(value)
    return params


def _print_epoch(epoch: int, metrics: dict[str, float]) -> None:
    print(json.dumps({"epoch": epoch, **metrics}), flush=True)  # noqa: T201 - the run's progress


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    params = load_params(args.params, args.set)
    config = FitConfig.from_dict(params)
    world = ddp.init_from_torchrun(config.train.device)
    logging.basicConfig(
        level=logging.INFO if world.main else logging.WARNING,
        format=f"%(asctime)s [rank {world.rank}] %(levelname)s %(name)s: %(message)s",
    )
    try:
        graph = TemporalGraph.load(args.graph, mmap=True)
        train = SampleSet.from_frame(pl.read_parquet(args.train_samples))
        val = SampleSet.from_frame(pl.read_parquet(args.val_samples)) if args.val_samples else None
        result = train_dgsr(
            graph,
            train,
            val,
            config,
            checkpoint_dir=args.checkpoint_dir or params.get("checkpoint_dir"),
            on_epoch_end=_print_epoch,
        )
        if world.main:
            artifact, history = training_outputs(result, config, graph.num_items)
            Path(args.model).parent.mkdir(parents=True, exist_ok=True)
            save_atomic(artifact, Path(args.model))
            Path(args.history).parent.mkdir(parents=True, exist_ok=True)
            Path(args.history).write_text(json.dumps(history, indent=2))
            logger.info("Wrote %s and %s", args.model, args.history)
        ddp.barrier(world)
    finally:
        if world.distributed:
            torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
