#!/usr/bin/env bash
# One prepared GPU check (< 8 minutes on one GPU; on an H200 ~4-5: 168 s before gpu_diag, ~1.5 min
# for it): the CUDA-marked tests (AMP, checkpoints resuming CUDA -> CPU -> CUDA, GPU scores against CPU
# scores), then benchmarks/gpu_check.py:
# GPU vs CPU results, training samples/s by batch size next to the loader alone, peak GPU memory,
# inference sessions/s, the projected full-OTTO epoch and the time to score 1.67M sessions over 1.86M
# items, each next to its target; then benchmarks/gpu_diag.py (scoring variants and profile, the
# training step alone, the fit loop's main process) and benchmarks/bench_collate.py (one loader
# worker's batch building by stage on these cores, ~40 s) and benchmarks/bench_ddp.py (one epoch under
# torchrun with 1..#GPUs processes next to a plain process, ~1-2 min). Without a GPU: the tests skip
# and the scripts run their CPU self-checks (exit 0 when they pass).
#
#   benchmarks/gpu_check.sh                # from anywhere; PYTHON=... to pick the interpreter
#   benchmarks/gpu_check.sh --batch-size 4096   # extra arguments go to gpu_check.py
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE} DO_NOT_TRACK=1 KEDRO_DISABLE_TELEMETRY=1

start=$(date +%s)
gpu=$("$PYTHON" -c "import torch; print(int(torch.cuda.is_available()))")
echo "== CUDA-marked tests (pytest -m cuda)"
"$PYTHON" -m pytest -m cuda -q -rs -p no:cacheprovider tests/test_cuda.py
echo
echo "== benchmarks/gpu_check.py"
"$PYTHON" benchmarks/gpu_check.py "$@"
echo
echo "== benchmarks/gpu_diag.py (where scoring and training time goes)"
"$PYTHON" benchmarks/gpu_diag.py
echo
echo "== benchmarks/bench_collate.py (what one loader worker spends per batch on this machine's cores)"
if [ "$gpu" = 1 ]; then
  "$PYTHON" benchmarks/bench_collate.py --events 2000000 --items 164000 --batch-sizes 8192 --workers
else  # the CPU self-check: the same code at a tiny size
  "$PYTHON" benchmarks/bench_collate.py --events 20000 --items 500 --batch-sizes 256 --batches 2 --workers 1
fi
echo
echo "== benchmarks/bench_ddp.py (one epoch under torchrun DDP next to one plain process)"
if [ "$gpu" = 1 ]; then
  # 1, 2, 4, ... processes up to the GPU count (the global batch must divide by each)
  gpus=$("$PYTHON" -c "import torch; n = torch.cuda.device_count(); print(*[2**i for i in range(8) if 2**i <= n])")
  "$PYTHON" benchmarks/bench_ddp.py --device cuda --nprocs $gpus --events 2000000 --items 164000 \
    --samples 983040 --global-batch 8192 --rounds 1
else  # the CPU self-check: gloo, tiny
  "$PYTHON" benchmarks/bench_ddp.py --events 20000 --items 500 --samples 1024 --nprocs 2 --rounds 1
fi
echo "gpu_check.sh: $(( $(date +%s) - start )) s in all"
