"""Write synthetic OTTO files at full Kaggle scale (or a fraction of it) with bounded memory.

    .venv/bin/python benchmarks/generate_otto_scale.py --out /data/otto_synth            # 12.9M sessions
    .venv/bin/python benchmarks/generate_otto_scale.py --out /tmp/otto10 --fraction 0.1

Same generator as the project's default data (:mod:`gnn_recsys.data.synthetic`), sized by
:meth:`SyntheticConfig.otto_scale`; memory is one chunk of ``--chunk-sessions`` sessions plus the
1.86M-item catalogue. Prints the counts, the elapsed time and events/s.
"""

from __future__ import annotations

import argparse
import logging
import resource
from pathlib import Path

from gnn_recsys.data.synthetic import SyntheticConfig, write_synthetic_otto


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True, help="folder for train.jsonl and test.jsonl")
    parser.add_argument("--fraction", type=float, default=1.0, help="fraction of OTTO's sessions and items")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chunk-sessions", type=int, default=200_000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    full = SyntheticConfig.otto_scale()
    config = SyntheticConfig.otto_scale(
        num_items=max(2, round(full.num_items * args.fraction)),
        num_train_sessions=round(full.num_train_sessions * args.fraction),
        num_test_sessions=round(full.num_test_sessions * args.fraction),
        seed=args.seed,
        chunk_sessions=args.chunk_sessions,
    )
    counts = write_synthetic_otto(args.out / "train.jsonl", args.out / "test.jsonl", config)
    for key, value in counts.items():
        print(f"{key:>16}: {value:,.1f}")
    print(f"{'peak_rss_mb':>16}: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f}")


if __name__ == "__main__":
    main()
