#!/usr/bin/env bash
# Stage, on a machine with the package registries, what bench/gpu_check.sh needs on a GPU machine
# that can reach nothing: MNIST's four .gz files in bench/.mnist/ and wheels in .whl/ of the
# packages fastdl needs that the GPU image lacks (platformdirs). Both folders are git-ignored;
# ship them with the checkout (the device tool's `carry`), then run gpu_check.sh there.
#
#   bash bench/gpu_prepare.sh            # MNIST from $FASTDL_DATA, else the user cache's copy
#
# Checks what it copies: each file's decompressed SHA-256 against fastdl's own table, so a damaged
# copy fails here, not in the GPU machine's few minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3

mkdir -p bench/.mnist .whl
"$PY" - <<'PY'
import gzip, hashlib, os, shutil
from pathlib import Path
from fastdl import datasets
src = Path(os.environ.get("FASTDL_DATA") or datasets.default_root())
for base, sha, _ in datasets.FILES.values():
    f = next((p for p in (src / f"{base}.gz", src / base) if p.is_file()), None)
    if f is None:
        raise SystemExit(f"gpu_prepare: no {base}(.gz) in {src}; set FASTDL_DATA to a folder with MNIST's four "
                         f"files, or run `fastdl train` once to download them")
    raw = f.read_bytes()
    if hashlib.sha256(gzip.decompress(raw) if f.suffix == ".gz" else raw).hexdigest() != sha:
        raise SystemExit(f"gpu_prepare: {f} does not match MNIST's published SHA-256; download it again")
    shutil.copyfile(f, Path("bench/.mnist") / f.name)
print(f"gpu_prepare: MNIST from {src} -> bench/.mnist/ (4 files, checked)")
PY
"$PY" -m pip download -q --no-deps --only-binary=:all: --dest .whl platformdirs
echo "gpu_prepare: wheels in .whl/: $(ls .whl | tr '\n' ' ')"
echo "gpu_prepare: now run on the GPU machine, carrying bench/.mnist and .whl:"
echo "  OUT=\$OUT bash bench/gpu_check.sh all"
