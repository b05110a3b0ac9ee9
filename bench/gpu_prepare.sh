#!/usr/bin/env bash
# Stage, on a machine with the package registries, what bench/gpu_check.sh needs on a GPU machine
# that can reach nothing: MNIST's four .gz files in bench/.mnist/ and wheels in .whl/ of the
# packages fastdl needs that the GPU image lacks (platformdirs). Both folders are git-ignored;
# ship them with the checkout (the device tool's `carry`), then run gpu_check.sh there.
#
#   bash bench/gpu_prepare.sh            # MNIST from $FASTDL_DATA, else the user cache's copy
#
# Checks what it copies with fastdl's own loader (SHA-256 of the decompressed bytes, IDX headers),
# so a damaged copy fails here, not in the GPU machine's few minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3

mkdir -p bench/.mnist .whl
"$PY" - <<'PY'
import shutil
from pathlib import Path
from fastdl import datasets
from fastdl.errors import FastDLError
src, _ = datasets.resolve_root()          # where load_mnist looks: FASTDL_DATA, else the user cache
try:                                      # the loader's own checks: SHA-256 and IDX headers
    datasets.load_mnist(root=src, download=False)
except FastDLError as exc:
    raise SystemExit(f"gpu_prepare: {exc}")
for base, _, _ in datasets.FILES.values():         # the files it read: .gz first, as it looks
    f = next(p for p in (src / f"{base}.gz", src / base) if p.is_file())
    shutil.copyfile(f, Path("bench/.mnist") / f.name)
print(f"gpu_prepare: MNIST from {src} -> bench/.mnist/ (4 files, checked)")
PY
"$PY" -m pip download -q --no-deps --only-binary=:all: --dest .whl platformdirs
echo "gpu_prepare: wheels in .whl/: $(ls .whl | tr '\n' ' ')"
echo "gpu_prepare: now run on the GPU machine, carrying bench/.mnist and .whl:"
echo "  OUT=\$OUT bash bench/gpu_check.sh all"
