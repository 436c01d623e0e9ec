"""Full-catalogue top-K: the chunk-maxima selection (``topk_chunked``) against plain ``torch.topk``.

Times :func:`~gnn_recsys.models.topk.topk_blocked` both ways over random session and item vectors (the
same tensors, alternating) and checks the lists agree. On a GPU the same comparison runs inside
``benchmarks/gpu_check.py`` at OTTO's catalogue size.

    python benchmarks/bench_topk.py                          # 2,048 sessions x 200k items, d = 64
    python benchmarks/bench_topk.py --sessions 512 --items 1855603 --repeats 3
"""

from __future__ import annotations

import argparse
import platform
import time

from gnn_recsys.runtime import configure_threads

configure_threads()

import torch  # noqa: E402

from gnn_recsys.models.topk import topk_blocked  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sessions", type=int, default=2048)
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--block", type=int, default=65_536)
    parser.add_argument("--chunk", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    gen = torch.Generator(device=device).manual_seed(0)
    query = torch.randn(args.sessions, args.dim, device=device, generator=gen)
    items = torch.randn(args.items, args.dim, device=device, generator=gen)
    print(f"{platform.processor() or platform.machine()} ({device}), {torch.get_num_threads()} threads: "
          f"{args.sessions:,} sessions x {args.items:,} items, d = {args.dim}, k = {args.k}, "
          f"block {args.block:,}")  # fmt: skip

    def run(chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
        out = topk_blocked(query, items, args.k, args.block, chunk=chunk)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return out

    times: dict[int, list[float]] = {0: [], args.chunk: []}
    results = {chunk: run(chunk) for chunk in times}  # warm-up, and the lists to compare
    for _ in range(args.repeats):
        for chunk, seconds in times.items():  # alternating, so drift hits both
            t0 = time.perf_counter()
            run(chunk)
            seconds.append(time.perf_counter() - t0)
    plain, chunked = min(times[0]), min(times[args.chunk])
    same_scores = torch.equal(results[0][1], results[args.chunk][1])
    same_items = float((results[0][0] == results[args.chunk][0]).float().mean())
    print(f"  plain torch.topk per block: {plain * 1000:,.1f} ms (best of {args.repeats})")
    print(f"  chunk maxima ({args.chunk}):         {chunked * 1000:,.1f} ms: {plain / chunked:.2f}x")
    print(f"  same scores: {same_scores}; same items: {same_items:.4f} (ties may swap)")


if __name__ == "__main__":
    main()
