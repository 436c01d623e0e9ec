"""Process-level settings: thread policy, memory reuse, device, mixed precision, progress bars.

Kept apart from the model and the loops so every entry point (Kedro, notebooks, benchmarks, the MLflow
model) gets the same behaviour.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterable, Iterator
from typing import Any


def configure_threads() -> None:
    """Make OpenMP threads sleep instead of spin while waiting (must run before torch starts its pool).

    PyTorch's OpenMP threads spin-wait by default; on a shared machine (a notebook, the MLflow UI or a
    second run beside training) every op then slows 10-100x (measured on 2 cores with the load at ~5:
    79-88 samples/s vs 1.3-3.2k with ``OMP_WAIT_POLICY=PASSIVE``). A value set by the user wins.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def keep_freed_memory(limit: int = 1 << 30) -> bool:
    """Let this process's ``malloc`` keep freed blocks of up to ``limit`` bytes for reuse (glibc only).

    glibc serves a large block (above a threshold of at most 32 MB) with a fresh ``mmap`` and unmaps it
    when freed, so each new large array pays its pages again in page faults. A loader worker builds
    every batch from dozens of arrays of several MB and frees them all: a batch of 8,192 samples took
    140 ms to sample, build and pack, 107 ms with freed memory kept (``benchmarks/bench_collate.py``).
    The price: the process holds on to its peak working set (~+330 MB resident at 8,192). Returns whether
    the setting took (False on other C libraries, where this does nothing).
    """
    import ctypes  # noqa: PLC0415

    if not uses_glibc():
        return False
    libc = ctypes.CDLL(None)
    m_trim_threshold, m_mmap_threshold = -1, -3  # malloc.h
    return bool(libc.mallopt(m_mmap_threshold, limit)) and bool(libc.mallopt(m_trim_threshold, limit))


def uses_glibc() -> bool:
    """Whether this process runs on the GNU C library (whose ``malloc`` :func:`keep_freed_memory` tunes)."""
    try:
        return (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")
    except (ValueError, OSError):  # the name is unknown outside glibc
        return False


def resolve_device(name: str) -> Any:
    """``"auto"`` -> CUDA when available, else CPU; anything else as given."""
    import torch  # noqa: PLC0415 - keep this module importable before torch starts

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def autocast(device: Any, enabled: bool) -> tuple[contextlib.AbstractContextManager, Any]:
    """``(context, dtype)``: bf16 (or fp16) autocast on CUDA when ``enabled``, else a no-op and None."""
    import torch  # noqa: PLC0415

    if device.type != "cuda" or not enabled:
        return contextlib.nullcontext(), None
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype), dtype


def progress(iterable: Iterable, enabled: bool, **kwargs: Any) -> Any:
    """A tqdm bar over ``iterable`` when enabled and stderr is a terminal; else ``iterable`` itself.

    Returning the iterable unwrapped matters: a disabled tqdm still calls ``iter()`` on it, and a
    loader whose ``__iter__`` starts an epoch must be iterated exactly once.
    """
    if not (enabled and sys.stderr.isatty()):
        return _Quiet(iterable)
    from tqdm.auto import tqdm  # noqa: PLC0415

    return tqdm(iterable, leave=False, **kwargs)


class _Quiet:
    """The iterable with a no-op ``set_postfix`` (the tqdm method the loops call)."""

    def __init__(self, iterable: Iterable) -> None:
        self.iterable = iterable

    def __iter__(self) -> Iterator:
        return iter(self.iterable)

    def set_postfix(self, **_: Any) -> None:
        pass


@contextlib.contextmanager
def share_cpu_with_workers(device: Any, num_workers: int) -> Iterator[None]:
    """On CPU, leave one core per loader worker to the workers while the main process computes."""
    import torch  # noqa: PLC0415

    if device.type != "cpu" or num_workers == 0:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, min(before, (os.cpu_count() or 1) - num_workers)))
    try:
        yield
    finally:
        torch.set_num_threads(before)
