#!/usr/bin/env bash
# One prepared run on a GPU machine: install what is missing, run the whole test suite with the
# cupy backend enabled, run the GPU benchmarks, and write everything to one folder.
#
#   OUT=/some/folder bash bench/gpu_check.sh
#
# MNIST comes from $FASTDL_DATA, or from bench/.mnist/ (git-ignored) when the machine has no copy:
#   mkdir -p bench/.mnist && cp /path/to/mnist/*.gz bench/.mnist/   # then ship bench/.mnist along
# Needs no network: what the GPU image lacks is only reported, and fastdl runs from this checkout
# (PYTHONPATH) rather than being installed.
# Budget: under 9 minutes on an H200 (tests 240 s at most, benchmarks 280 s). Writes $OUT/gpu-tests.log, $OUT/gpu-bench.json,
# $OUT/gpu-bench.log and $OUT/env.txt.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/results/gpu-$(date +%Y%m%d)}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
[ -z "${FASTDL_DATA:-}" ] && [ -d bench/.mnist ] && export FASTDL_DATA=$PWD/bench/.mnist

{
  date -u; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  $PY -c "import sys, numpy, cupy; print(sys.version); print('numpy', numpy.__version__, 'cupy', cupy.__version__)"
} > "$OUT/env.txt" 2>&1

# What the GPU image lacks (it has cupy, numba, torch, pytest, pytest-benchmark): check, then install.
missing=$($PY - <<'PY'
import importlib.util as u
print(" ".join(p for m, p in [("platformdirs", "platformdirs"), ("tqdm", "tqdm"), ("hypothesis", "hypothesis"),
      ("pytest_benchmark", "pytest-benchmark"), ("threadpoolctl", "threadpoolctl")] if u.find_spec(m) is None))
PY
)
[ -n "$missing" ] && { echo "missing: $missing (trying pip)"; $PY -m pip install -q $missing || true; } >> "$OUT/env.txt" 2>&1
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}

# 1. Every test, cupy included (parity of every kernel, fused kernels, end to end).
timeout 240 $PY -m pytest -q -p no:cacheprovider tests -k "not wheel" 2>&1 | tee "$OUT/gpu-tests.log"
echo "tests exit: ${PIPESTATUS[0]}" >> "$OUT/env.txt"

# 2. GPU benchmarks: the book's workload and the larger networks on cupy, numba (CPU) and PyTorch.
timeout 280 $PY -m pytest -q -p no:cacheprovider bench/test_bench_training.py bench/test_bench_gpu.py \
    -k "cupy or gpu or torch" --benchmark-json="$OUT/gpu-bench.json" --benchmark-columns=median,rounds \
    2>&1 | tee "$OUT/gpu-bench.log"
echo "bench exit: ${PIPESTATUS[0]}" >> "$OUT/env.txt"
