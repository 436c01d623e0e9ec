"""The context-window mean of a DGSR step: ``bag_mean`` (sparse product) against ``F.embedding_bag``.

Forward plus backward, the shapes of a training batch's leaf hop (rows = distinct neighbour-session
context windows, a table of the batch's distinct context items), alternating the two so that both
see the same machine state. Prints milliseconds per call and the ratio; nothing is asserted.

    .venv/bin/python benchmarks/bench_bag.py                         # 50k rows x 4, tables of 4k / 100k
    .venv/bin/python benchmarks/bench_bag.py --rows 200000 --tables 500000
"""

from __future__ import annotations

import argparse
import functools
import time

import torch
import torch.nn.functional as F

from gnn_recsys.models.bag import bag_mean


def _dense(context: torch.Tensor, table: torch.Tensor, pad: int) -> torch.Tensor:
    return F.embedding_bag(context, table, mode="mean", padding_idx=pad)


def _sparse(context: torch.Tensor, table: torch.Tensor, pad: int) -> torch.Tensor:
    return bag_mean(context, table, pad)


def _time(fn, table: torch.Tensor, grad: torch.Tensor, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.autograd.grad(fn(table), table, grad)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--width", type=int, default=4, help="context window (before + after)")
    parser.add_argument("--tables", type=int, nargs="*", default=[4_000, 100_000], help="table rows")
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--padding", type=float, default=0.3, help="share of padded slots")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    generator = torch.Generator().manual_seed(0)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; best of {args.repeats}, forward + backward"
    )
    print(f"{'rows':>8} {'table':>8} {'embedding_bag ms':>17} {'bag_mean ms':>12} {'speed-up':>9}")
    for rows in [args.rows]:
        for table_rows in args.tables:
            context = torch.randint(0, table_rows, (rows, args.width), generator=generator)
            context[torch.rand(rows, args.width, generator=generator) < args.padding] = table_rows
            table = torch.randn(table_rows + 1, args.dim, generator=generator, requires_grad=True)
            grad = torch.randn(rows, args.dim, generator=generator)
            dense = functools.partial(_dense, context, pad=table_rows)
            sparse = functools.partial(_sparse, context, pad=table_rows)
            reference, ours = float("inf"), float("inf")
            for _ in range(2):  # alternate, keep the best of each
                reference = min(reference, _time(dense, table, grad, args.repeats))
                ours = min(ours, _time(sparse, table, grad, args.repeats))
            print(
                f"{rows:>8} {table_rows:>8} {reference * 1e3:>17.2f} {ours * 1e3:>12.2f} {reference / ours:>8.1f}x"
            )


if __name__ == "__main__":
    main()
