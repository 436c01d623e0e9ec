"""Project hooks: ``--params`` checked against the parameter files, MLflow runs that say what ran, and
each node's wall time and peak memory.

Registered in ``settings.HOOKS``. Kedro calls plugin hooks (kedro-mlflow's) before project hooks of
the same name; the ``trylast`` markers make that order explicit, so the MLflow run kedro-mlflow
opens in ``before_pipeline_run`` exists when it is named and tagged here.
"""

from __future__ import annotations

import copy
import difflib
import logging
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import mlflow
from kedro.framework.hooks import hook_impl

logger = logging.getLogger(__name__)

#: Parameters whose mapping takes keys that are not in the parameter files: the values of an event
#: table's type column (``--params "event_types.view=clicks"``).
OPEN_MAPPINGS: frozenset[str] = frozenset({"event_types"})

#: MLflow allows 250 characters in a run name; longer override lists stay whole in the ``overrides`` tag.
MAX_RUN_NAME = 250


class UnknownParameterError(KeyError):
    """A runtime parameter (``--params`` or ``runtime_params``) that no parameter file defines."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class RunInterrupted(KeyboardInterrupt, Exception):
    """Ctrl-C during a pipeline run.

    A ``KeyboardInterrupt`` (click prints "Aborted!", Jupyter shows an interrupted cell) that is also
    an ``Exception``, so that Kedro calls ``on_pipeline_error`` and the MLflow run gets closed
    instead of being recorded as FINISHED at interpreter exit.
    """


def leaf_paths(
    params: Mapping[str, Any], prefix: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], Any]]:
    """``(key path, value)`` of every leaf of a nested mapping (an empty mapping is a leaf)."""
    for key, value in params.items():
        path = (*prefix, str(key))
        if isinstance(value, Mapping) and value:
            yield from leaf_paths(value, path)
        else:
            yield path, value


def check_runtime_params(runtime: Mapping[str, Any], defined: Mapping[str, Any]) -> None:
    """Raise :class:`UnknownParameterError` for the first runtime key path the parameter files lack.

    A path must follow the files' nesting down to an existing key; it may replace a whole leaf
    (lists and nulls included) but not reach below one, and may add keys only under
    :data:`OPEN_MAPPINGS`. The message names the valid keys at the level where the path went wrong.
    """
    for path, _ in leaf_paths(runtime):
        node: Any = defined
        for depth, key in enumerate(path):
            where = ".".join(path[:depth])
            if where in OPEN_MAPPINGS:
                break
            if not isinstance(node, Mapping):
                raise UnknownParameterError(
                    f"--params {'.'.join(path)}: {where!r} is a single value ({node!r}), not a mapping; "
                    f"set it as {where}=..."
                )
            if key not in node:
                valid = sorted(str(k) for k in node)
                close = difflib.get_close_matches(key, valid, n=1)
                hint = f" Did you mean {'.'.join((*path[:depth], close[0]))!r}?" if close else ""
                level = f"under {where!r}" if where else "at the top level"
                raise UnknownParameterError(
                    f"--params {'.'.join(path)}: no parameter {key!r} {level} in conf/ parameter files; "
                    f"valid keys {level}: {', '.join(valid)}.{hint}"
                )
            node = node[key]


def overrides_text(runtime: Mapping[str, Any]) -> str:
    """``a.b=1,c=x``: the runtime parameters as they would be typed after ``--params``."""
    return ",".join(f"{'.'.join(path)}={value}" for path, value in leaf_paths(runtime))


def data_source(params: Mapping[str, Any]) -> str:
    """Where the run's raw data came from, in a few words (the ingestion parameters' precedence)."""
    if params.get("raw_train_path"):
        return f"{params.get('raw_format', 'otto_jsonl')}:{params['raw_train_path']}"
    source = params.get("data_source", "synthetic")
    if source == "synthetic" and isinstance(params.get("synthetic"), Mapping):
        synthetic = params["synthetic"]
        return (
            f"synthetic(seed={synthetic.get('seed')},sessions={synthetic.get('num_train_sessions')},"
            f"items={synthetic.get('num_items')})"
        )
    if source == "otto":
        return f"otto:{params.get('otto_dir')}"
    return str(source)


def git_commit(path: Path) -> str:
    """``HEAD``'s sha, with ``-dirty`` when tracked files differ from it; ``unknown`` outside git."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=path,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{sha}-dirty" if changed else sha


class ParamsValidationHook:
    """Stop at once when ``--params`` names a key the parameter files do not define.

    Without it a misspelt key (``baselines.covisitation.top_k=30``) is silently ignored and the run
    uses the defaults, and a misspelt leaf fails late with a bare ``TypeError`` in some node.
    """

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        runtime = getattr(context, "_runtime_params", None) or {}
        if not runtime:
            return
        loader = copy.copy(context.config_loader)
        loader.runtime_params = {}
        check_runtime_params(runtime, loader["parameters"])


class MlflowRunHook:
    """Name and tag kedro-mlflow's run, and never leave it RUNNING or wrongly FINISHED.

    * run name: the pipeline, the environment when it is not the default, and the overrides;
    * tags: ``pipeline``, ``env``, ``data_source``, ``overrides``, ``git_commit``;
    * a normal end closes every run this pipeline opened, also in-process (notebooks, tests), where
      no interpreter exit would close it;
    * Ctrl-C raises :class:`RunInterrupted`: kedro-mlflow closes the run as FAILED on the pipeline
      error, and it is then marked KILLED.
    """

    def __init__(self) -> None:
        self._run_id: str | None = None
        self._outer_run_id: str | None = None
        self._params: dict[str, Any] = {}
        self._runtime: dict[str, Any] = {}
        self._project_path: Path | None = None
        self._previous_sigint: Any = None

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        active = mlflow.active_run()
        self._outer_run_id = active.info.run_id if active else None
        self._runtime = dict(getattr(context, "_runtime_params", None) or {})
        self._params = dict(context.config_loader["parameters"])
        self._project_path = Path(context.project_path)

    @hook_impl(trylast=True)
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        active = mlflow.active_run()
        if active is None or active.info.run_id == self._outer_run_id:
            self._run_id = None  # tracking is off for this pipeline, or a user's run is reused
            return
        self._run_id = active.info.run_id
        pipelines = "+".join(run_params.get("pipeline_names") or ["__default__"])
        env = run_params.get("env") or "local"
        overrides = overrides_text(self._runtime)
        name = " ".join(part for part in (pipelines, "" if env == "local" else f"[{env}]", overrides) if part)
        mlflow.set_tags(
            {
                "mlflow.runName": name[:MAX_RUN_NAME],
                "pipeline": pipelines,
                "env": env,
                "data_source": data_source(self._params),
                "overrides": overrides or "(none)",
                # kedro-mlflow's own tag leaves out --env and --params
                "kedro_command": " ".join(
                    part
                    for part in (
                        f"kedro run --pipelines={pipelines}",
                        "" if env == "local" else f"--env={env}",
                        f'--params "{overrides}"' if overrides else "",
                    )
                    if part
                ),
                "git_commit": git_commit(self._project_path or Path.cwd()),
            }
        )
        logger.info("MLflow run %r (%s)", name, self._run_id)
        if threading.current_thread() is threading.main_thread():
            self._previous_sigint = signal.signal(signal.SIGINT, self._on_sigint)

    def _on_sigint(self, signum: int, frame: Any) -> None:
        self._restore_sigint()
        raise RunInterrupted(f"interrupted by signal {signum} (Ctrl-C)")

    def _restore_sigint(self) -> None:
        if self._previous_sigint is not None:
            signal.signal(signal.SIGINT, self._previous_sigint)
            self._previous_sigint = None

    def _close_runs(self, status: str) -> None:
        """End this pipeline's runs left on the thread's stack (a user's outer run stays open)."""
        while (active := mlflow.active_run()) is not None and active.info.run_id != self._outer_run_id:
            mlflow.end_run(status)

    @hook_impl(trylast=True)
    def after_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        self._restore_sigint()
        if self._run_id is not None:
            self._close_runs("FINISHED")

    @hook_impl(trylast=True)
    def on_pipeline_error(
        self, error: Exception, run_params: dict[str, Any], pipeline: Any, catalog: Any
    ) -> None:
        self._restore_sigint()
        if self._run_id is None:
            return
        status = "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED"
        self._close_runs(status)
        mlflow.MlflowClient().set_terminated(self._run_id, status)
        logger.info("MLflow run %s recorded as %s", self._run_id, status)


def _memory_gb(field: str) -> float | None:
    """``VmRSS`` (now) or ``VmHWM`` (the process's peak so far) in GB; ``None`` without ``/proc``."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024**2
    except OSError:
        return None
    return None


class _RssSampler(threading.Thread):
    """Polls the process's RSS while a node runs: its peak, where the node set no new process peak.

    The kernel's high-water mark could be reset per node (``/proc/self/clear_refs``), but that would
    also hide the process's true peak from ``time -v`` and ``wait4``, which the benchmarks read.
    """

    def __init__(self, interval_s: float = 0.05) -> None:
        super().__init__(daemon=True, name="rss-sampler")
        self.interval_s = interval_s
        self.peak = _memory_gb("VmRSS") or 0.0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval_s):
            self.peak = max(self.peak, _memory_gb("VmRSS") or 0.0)

    def stop(self) -> float:
        self._stop_event.set()
        self.join()
        return max(self.peak, _memory_gb("VmRSS") or 0.0)


class NodeTimingHook:
    """Wall time and peak RSS of every node: a table in the log at the end of a run and, when an MLflow
    run is active, metrics ``node_seconds.<node>`` / ``node_peak_rss_gb.<node>`` plus the table as the
    artifact ``node_timings.txt`` (where a run's time goes, compared across runs in the MLflow UI).

    A node's peak RSS is the process's (Linux ``/proc``), so it includes what earlier nodes left in
    memory: exact when the node set a new process peak (``VmHWM`` rose), otherwise the largest RSS
    polled every 50 ms while it ran.
    """

    def __init__(self) -> None:
        self._started: dict[str, tuple[float, float | None, _RssSampler | None]] = {}
        self.timings: dict[str, tuple[float, float | None]] = {}

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        self._started.clear()
        self.timings = {}

    @hook_impl
    def before_node_run(self, node: Any) -> None:
        high_water = _memory_gb("VmHWM")
        sampler = _RssSampler() if high_water is not None else None
        if sampler is not None:
            sampler.start()
        self._started[node.name] = (time.perf_counter(), high_water, sampler)

    @hook_impl
    def after_node_run(self, node: Any) -> None:
        entry = self._started.pop(node.name, None)
        if entry is None:
            return
        started, high_water_before, sampler = entry
        seconds = time.perf_counter() - started
        peak = None
        if sampler is not None:
            polled = sampler.stop()
            high_water = _memory_gb("VmHWM")
            rose = high_water is not None and high_water_before is not None and high_water > high_water_before
            peak = high_water if rose else polled
        self.timings[node.name] = (seconds, peak)

    @hook_impl
    def on_node_error(self, node: Any) -> None:
        entry = self._started.pop(node.name, None)
        if entry is not None and entry[2] is not None:
            entry[2].stop()

    def table(self) -> str:
        """The nodes by wall time, longest first, with their share of the total."""
        total = sum(seconds for seconds, _ in self.timings.values()) or 1.0
        lines = [f"{'node':<60} {'wall s':>8} {'share':>6} {'peak RSS GB':>12}"]
        for name, (seconds, peak) in sorted(self.timings.items(), key=lambda item: -item[1][0]):
            rss = "" if peak is None else f"{peak:.2f}"
            lines.append(f"{name:<60} {seconds:>8.1f} {seconds / total:>6.1%} {rss:>12}")
        lines.append(f"{'all nodes':<60} {total:>8.1f}")
        return "\n".join(lines)

    # tryfirst: kedro-mlflow ends its run in its own after_pipeline_run
    @hook_impl(tryfirst=True)
    def after_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        if not self.timings:
            return
        table = self.table()
        logger.info("Node wall times:\n%s", table)
        if mlflow.active_run() is None:
            return
        metrics = {f"node_seconds.{name}": seconds for name, (seconds, _) in self.timings.items()}
        metrics |= {
            f"node_peak_rss_gb.{name}": peak for name, (_, peak) in self.timings.items() if peak is not None
        }
        mlflow.log_metrics(metrics)
        mlflow.log_text(table, "node_timings.txt")
