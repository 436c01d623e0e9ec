"""GPU diagnosis: where full-catalogue scoring and DGSR training spend their time.

``gpu_check.py`` says how fast; this says why, for the next change. Two parts, each printing figures:

- ``scoring``: top-20 of 8,192 random sessions over OTTO's 1.86M items, projected to all 1.67M test
  sessions, for the pipeline's path and its variants (plain ``torch.topk``, group sizes, block size,
  TF32, a bf16 product, adjacent vs interleaved groups, the product alone), with how many top-20 sets
  match a float32 reference, then a ``torch.profiler`` table of the pipeline's path.
- ``training``: the training step alone on batches already on the device (the GPU's ceiling, one
  batch and several in turn), the fit loop's main process split into waiting for a batch, copying it
  and stepping, with ``--loop-workers`` loader workers (also without pinned memory and with the main
  process on cores of its own), then ``gpu_check``'s training run with each of ``--train-workers``.

On an H200 both parts took ~70 s (figures in ``benchmarks/README.md``). Without a GPU it runs the same
code at a tiny size as a dry run (CPU figures).

    python benchmarks/gpu_diag.py                       # both parts
    python benchmarks/gpu_diag.py training --loop-workers 8 14 --train-workers 6 10
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gnn_recsys.runtime import configure_threads

configure_threads()

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from gpu_check import OTTO_ITEMS, OTTO_TEST_SESSIONS, SIZES, _graph, training_throughput  # noqa: E402

from gnn_recsys.graph.sampler import training_sample_events  # noqa: E402
from gnn_recsys.graph.temporal_graph import TemporalGraph  # noqa: E402
from gnn_recsys.loader import LoaderConfig, SampleSet  # noqa: E402
from gnn_recsys.loader.collate import SubgraphCollate, make_sampler  # noqa: E402
from gnn_recsys.loader.loaders import EpochBatches, make_loader  # noqa: E402
from gnn_recsys.models.batch import DGSRBatch  # noqa: E402
from gnn_recsys.models.dgsr import DGSR  # noqa: E402
from gnn_recsys.models.loss import make_loss  # noqa: E402
from gnn_recsys.models.topk import topk_blocked, topk_chunked  # noqa: E402
from gnn_recsys.runtime import autocast  # noqa: E402
from gnn_recsys.training import FitConfig  # noqa: E402
from gnn_recsys.training.ema import WeightAverage  # noqa: E402
from gnn_recsys.training.fit import train_step  # noqa: E402
from gnn_recsys.training.optim import make_optimizer  # noqa: E402

T0 = time.perf_counter()
K, DIM, SESSIONS, BLOCK = 20, 64, 8192, 65_536


def log(message: str) -> None:
    print(f"[{time.perf_counter() - T0:6.1f} s] {message}", flush=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_time(fn: Callable[[], Any], device: torch.device, repeat: int = 3) -> float:
    fn()  # warm-up
    sync(device)
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


# --------------------------------------------------------------------------------------------------
# scoring
# --------------------------------------------------------------------------------------------------


def _blocked(score_block: Callable, query: torch.Tensor, items: torch.Tensor, *, interleaved: bool | None):
    """``topk_blocked`` with another product (``score_block(query, block)``) and grouping."""
    best_score = torch.empty((query.shape[0], 0), device=query.device)
    best_index = torch.empty((query.shape[0], 0), device=query.device, dtype=torch.long)
    for start in range(0, items.shape[0], BLOCK):
        scores = score_block(query, items[start : start + BLOCK])
        score, index = topk_chunked(scores, K, 32, interleaved=interleaved)
        best_score, pick = torch.cat([best_score, score.float()], 1).topk(K, dim=1)
        best_index = torch.gather(torch.cat([best_index, index + start], 1), 1, pick)
    return best_index, best_score


def _with_tf32(fn: Callable[[], Any]) -> Callable[[], Any]:
    def run() -> Any:
        torch.backends.cuda.matmul.allow_tf32 = True
        try:
            return fn()
        finally:
            torch.backends.cuda.matmul.allow_tf32 = False

    return run


def scoring(device: torch.device, num_items: int, sessions: int) -> None:
    gen = torch.Generator(device=device).manual_seed(0)
    items = torch.randn(num_items, DIM, device=device, generator=gen)
    query = torch.randn(sessions, DIM, device=device, generator=gen)
    items16, query16 = items.bfloat16(), query.bfloat16()
    reference, _ = topk_blocked(query, items, K, BLOCK, chunk=0)

    def pipeline(block: int = BLOCK, chunk: int = 32, q: torch.Tensor = query) -> Any:
        with torch.autocast(device.type, dtype=torch.bfloat16):  # as inference runs it
            return topk_blocked(q, items, K, block, chunk=chunk)

    def bf16_copy(q: torch.Tensor, block: torch.Tensor) -> torch.Tensor:
        return (q @ block.T).float()

    def bf16_fp32_out(q: torch.Tensor, block: torch.Tensor) -> torch.Tensor:
        return torch.mm(q, block.T, out_dtype=torch.float32)  # CUDA only

    def fp32(q: torch.Tensor, block: torch.Tensor) -> torch.Tensor:
        return q @ block.T

    variants: dict[str, Callable[[], Any]] = {
        "pipeline: fp32 product, groups of 32 (interleaved off the CPU)": pipeline,
        "plain torch.topk per block": lambda: pipeline(chunk=0),
        "groups of 16": lambda: pipeline(chunk=16),
        "groups of 64": lambda: pipeline(chunk=64),
        "blocks of 262,144 items": lambda: pipeline(block=262_144),
        "TF32 product": _with_tf32(pipeline),
        "bf16 product + fp32 copy, adjacent groups (before)": lambda: _blocked(bf16_copy, query16, items16, interleaved=False),
        "bf16 product + fp32 copy, interleaved groups": lambda: _blocked(bf16_copy, query16, items16, interleaved=None),
        "bf16 product written as fp32, interleaved groups": lambda: _blocked(bf16_fp32_out, query16, items16, interleaved=None),
        "fp32 product, adjacent groups": lambda: _blocked(fp32, query, items, interleaved=False),
        "the fp32 product alone": lambda: [fp32(query, items[s : s + BLOCK]) for s in range(0, num_items, BLOCK)],
        "the bf16 product alone": lambda: [query16 @ items16[s : s + BLOCK].T for s in range(0, num_items, BLOCK)],
    }  # fmt: skip
    batches = OTTO_TEST_SESSIONS / sessions * OTTO_ITEMS / num_items
    for name, fn in variants.items():
        try:
            seconds = best_time(fn, device)
        except (RuntimeError, NotImplementedError) as error:
            log(f"  {name}: not available here ({type(error).__name__})")
            continue
        out, agree = fn(), ""
        if isinstance(out, tuple):
            same = (out[0].sort(1).values == reference.sort(1).values).all(1).float().mean().item()
            agree = f"; top-20 sets equal to fp32 plain top-K: {same:.4f}"
        log(f"  {name:<52} {seconds * 1e3:7.1f} ms -> {seconds * batches:6.1f} s for all{agree}")
    for batch in (16_384, 32_768) if device.type == "cuda" else ():
        q = torch.randn(batch, DIM, device=device, generator=gen)
        seconds = best_time(lambda q=q: pipeline(q=q), device, repeat=2)
        log(
            f"  pipeline, {batch:,} sessions a batch: {seconds * OTTO_TEST_SESSIONS / batch * OTTO_ITEMS / num_items:.1f} s for all"
        )
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        pipeline()
        sync(device)
    sort_by = "cuda_time_total" if device.type == "cuda" else "cpu_time_total"
    print(prof.key_averages().table(sort_by=sort_by, row_limit=12, max_name_column_width=48))


# --------------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------------


def _stepper(graph: TemporalGraph, train: SampleSet, config: FitConfig, device: torch.device):
    """One optimisation step plus the moving average, built as the fit loop builds them."""
    model = DGSR.from_config(graph.num_items, config.model).to(device)
    counts = np.bincount(train.target, minlength=graph.num_items)
    loss_fn = make_loss(config.loss, counts, sparse=config.model.sparse_embedding).to(device)
    optimizer = make_optimizer(model, config.train)
    amp, amp_dtype = autocast(device, config.train.amp)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    negatives = torch.Generator(device=device).manual_seed(0)
    type_weights = torch.tensor(config.loss.type_weights, dtype=torch.float32, device=device)
    average = WeightAverage(model, config.train.ema_decay)

    def step(batch: DGSRBatch) -> None:
        train_step(model, loss_fn, optimizer, scaler, batch, amp=amp, grad_clip=config.train.grad_clip,
                   generator=negatives, type_weights=type_weights)  # fmt: skip
        average.update()

    return step


def _allocator(device: torch.device) -> str:
    if device.type != "cuda":
        return "n/a"
    stats = torch.cuda.memory_stats(device)
    return f"{stats.get('num_device_alloc', '?')} device allocations, {stats.get('num_alloc_retries', '?')} retries"


def _thread_usage() -> tuple[float, int, int]:
    """(CPU seconds, voluntary, involuntary context switches) of the calling thread so far (Linux)."""
    usage = resource.getrusage(resource.RUSAGE_THREAD)
    return usage.ru_utime + usage.ru_stime, usage.ru_nvcsw, usage.ru_nivcsw


def _main_thread(before: tuple[float, int, int], steps: float, wall: float) -> str:
    """How the launching thread spent a stretch of ``steps`` steps: on a CPU (running, or spinning on
    a full GPU queue), waiting of its own accord (voluntary switches: the GIL, a lock, I/O) or pushed
    off its core (involuntary switches: more runnable threads than cores)."""
    cpu, voluntary, involuntary = (now - then for now, then in zip(_thread_usage(), before, strict=True))
    return (f"main thread on a CPU {cpu / steps * 1e3:.1f} ms per step ({cpu / wall:.0%} of the time), "
            f"{voluntary / steps:.1f} voluntary and {involuntary / steps:.1f} involuntary switches per step")  # fmt: skip


def step_alone(step: Callable, host_batches: list[DGSRBatch], device: torch.device) -> None:
    """Steps on batches already on the device, one again and again, then several in turn."""
    batches = [host.to(device) for host in host_batches]
    for label, cycle in (("one batch", batches[:1]), (f"{len(batches)} batches in turn", batches)):
        seconds = best_time(lambda cycle=cycle: [step(b) for b in cycle * (12 // len(cycle))], device, 1) / 12
        log(f"  step alone, {label}: {seconds * 1e3:.1f} ms -> {cycle[0].num_samples / seconds:,.0f} samples/s "
            f"({_allocator(device)})")  # fmt: skip
    before, t0 = _thread_usage(), time.perf_counter()
    for batch in batches * 3:
        step(batch)
    sync(device)
    log(f"  step alone: {_main_thread(before, len(batches) * 3, time.perf_counter() - t0)}")
    if device.type == "cuda":
        try:
            host_syncs(step, batches[0])
        except (RuntimeError, AttributeError) as error:  # a diagnosis must not stop the rest
            log(f"  host synchronisations not counted: {type(error).__name__}: {error}")


def host_syncs(step: Callable, batch: DGSRBatch) -> None:
    """The operations of one step that wait for the GPU (``torch.cuda.set_sync_debug_mode``)."""
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            step(batch)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    # the warning names no operation, only the Python line that called it
    syncs = Counter(f"{Path(w.filename).name}:{w.lineno}" for w in caught if "synchroniz" in str(w.message))
    log(f"  host synchronisations in one step: {sum(syncs.values())}")
    for line, count in syncs.most_common(10):
        print(f"    {count} x {line}")


def fit_loop(  # noqa: PLR0917
    step: Callable,
    collate: SubgraphCollate,
    device: torch.device,
    workers: int,
    batch_size: int,
    samples: int,
    *,
    own_cores: bool = False,
    pin_memory: bool = True,
    pack: bool = True,
    keep_freed_memory: bool = True,
) -> None:
    """The fit loop's main process with loader workers: waiting for a batch, copying it, stepping
    (launching kernels; a step also blocks when the GPU's queue is full).

    Two experiments on why a step slows 1.6-2.1x beside busy workers: ``own_cores``: the main process
    (with its pin-memory thread) keeps cores 0-1 to itself and the workers share the others;
    ``pin_memory=False``: no pin-memory thread in the main process competing with the launching
    thread for the GIL (batches are then received by the main thread and copied synchronously);
    ``pack=False``: workers hand over ~30 tensors per batch instead of one buffer (the loader before
    ``loader.pack``), each a shared-memory segment the pin-memory thread must open;
    ``keep_freed_memory=False``: workers get fresh pages from the kernel for every large array again
    (``loader.keep_freed_memory`` off: more kernel time and memory traffic beside the main process)."""
    batches = EpochBatches(len(collate.samples), batch_size)
    batches.new_epoch(np.random.default_rng(1).permutation(len(collate.samples))[:samples])
    loader = make_loader(collate, batches, LoaderConfig(num_workers=workers, pin_memory=pin_memory, pack=pack,
                                                   keep_freed_memory=keep_freed_memory), device,
                         persistent=False)  # fmt: skip
    every_core = os.sched_getaffinity(0)
    main_cores = set(sorted(every_core)[:2])
    if own_cores and workers > 0:
        loader.worker_init_fn = _worker_on_other_cores(loader.worker_init_fn, every_core - main_cores)
    batch_iter = iter(loader)  # forks the workers
    if own_cores and workers > 0:
        os.sched_setaffinity(0, main_cores)
    step(next(batch_iter).to(device))  # workers started, first batches queued
    sync(device)
    seen, wait, move, stepping = 0, 0.0, 0.0, 0.0
    t0, usage, process_cpu = time.perf_counter(), _thread_usage(), time.process_time()
    for host, waited in _timed_iter(batch_iter):
        t1 = time.perf_counter()
        batch = host.to(device, non_blocking=True)
        t2 = time.perf_counter()
        step(batch)
        wait, move, stepping = wait + waited, move + t2 - t1, stepping + time.perf_counter() - t2
        seen += batch.num_samples
    sync(device)
    total, steps = time.perf_counter() - t0, seen / batch_size
    threads = _main_thread(usage, steps, total)
    process_cpu = time.process_time() - process_cpu  # the main process's threads together
    os.sched_setaffinity(0, every_core)
    variant = (
        ", main process on cores of its own" if own_cores else ", no pinned memory" if not pin_memory
        else ", batches not packed" if not pack
        else ", workers not keeping freed memory" if not keep_freed_memory else ""
    )  # fmt: skip
    log(f"  fit loop, {workers} workers{variant}: {seen / total:,.0f} samples/s; per step {total / steps * 1e3:.1f} ms: "
        f"waiting {wait / steps * 1e3:.1f}, copy {move / steps * 1e3:.1f}, step {stepping / steps * 1e3:.1f}")  # fmt: skip
    log(f"    {threads}; all its threads {process_cpu / steps * 1e3:.1f} ms CPU per step")


def _worker_on_other_cores(worker_init: Callable[[int], None], cores: set[int]) -> Callable[[int], None]:
    def init(worker_id: int) -> None:
        worker_init(worker_id)  # the loader's own (threads, memory reuse)
        os.sched_setaffinity(0, cores)

    return init


def _timed_iter(batch_iter: Any) -> Any:
    """``(batch, seconds waited for it)`` pairs."""
    while True:
        t0 = time.perf_counter()
        try:
            batch = next(batch_iter)
        except StopIteration:
            return
        yield batch, time.perf_counter() - t0


def training(
    device: torch.device, size: dict, batch_size: int, loop_workers: list[int], train_workers: list[int]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        _graph(size["events"], size["items"]).save(Path(tmp) / "graph")
        graph = TemporalGraph.load(Path(tmp) / "graph")  # memory-mapped, as the pipeline loads it
        log(f"  data: {graph.num_events:,} events, {graph.num_items:,} items")
        train = SampleSet.from_events(graph, training_sample_events(graph))
        config = FitConfig().with_(train={"batch_size": batch_size, "device": device.type})
        collate = SubgraphCollate(graph, train, config.model, sampler=make_sampler(graph, config.model))
        rng = np.random.default_rng(0)
        rows = [rng.choice(len(train), batch_size, replace=False) for _ in range(4)]
        t0 = time.perf_counter()
        host_batches = [collate(r).pack(narrow=device.type == "cuda") for r in rows]
        per = (time.perf_counter() - t0) / len(rows)
        log(
            f"  one process collates {batch_size:,} samples in {per * 1e3:.0f} ms: {batch_size / per:,.0f} samples/s a core"
        )
        step = _stepper(graph, train, config, device)
        step_alone(step, host_batches, device)
        for workers in loop_workers:
            variants = [{}, {"pack": False}, {"pin_memory": False}, {"keep_freed_memory": False}]
            variants = variants if device.type == "cuda" else [{}]
            if len(os.sched_getaffinity(0)) > 2:
                variants.append({"own_cores": True})
            for variant in variants:
                fit_loop(
                    step, collate, device, workers, batch_size, min(len(train), 150 * batch_size), **variant
                )
        for workers in train_workers:
            training_throughput(graph, device, size, batch_size, workers)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("parts", nargs="*", help="scoring and/or training (default: both)")
    parser.add_argument("--loop-workers", type=int, nargs="*", default=[8, 14])
    parser.add_argument("--train-workers", type=int, nargs="*", default=[])
    args = parser.parse_args(argv)
    parts = args.parts or ["scoring", "training"]
    if set(parts) - {"scoring", "training"}:
        parser.error(f"parts are scoring and training, not {parts}")
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    name = torch.cuda.get_device_name(device) if cuda else "CPU dry run at a tiny size"
    log(f"gpu_diag: torch {torch.__version__}, {name}")
    lscpu = subprocess.run(["lscpu"], check=False, capture_output=True, text=True).stdout
    for line in lscpu.splitlines():
        if line.split(":")[0] in ("CPU(s)", "Model name", "Thread(s) per core", "Core(s) per socket"):
            print("  " + " ".join(line.split()))
    if "scoring" in parts:
        log("scoring: top-20 of a batch of sessions over the catalogue (projected to 1.67M x 1.86M)")
        scoring(device, OTTO_ITEMS if cuda else 70_000, SESSIONS if cuda else 512)
    if "training" in parts:
        log("training: the step alone, the fit loop's main process, whole training runs")
        size = SIZES["gpu"] if cuda else SIZES["cpu"]
        training(
            device, size, SESSIONS if cuda else 256, args.loop_workers if cuda else [1], args.train_workers
        )
    log("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
