"""The two parsers of untrusted bytes, fed random and mutated input: they raise only their
documented error (FileFormatError), never hang, and never allocate what a header merely claims."""

import gzip
import random
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastdl
from fastdl import datasets
from fastdl.errors import FileFormatError
from reliability import record

FUZZ = settings(max_examples=300, deadline=2000, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _idx(shape, fill=7):
    arr = np.full(shape, fill, np.uint8)
    return bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in shape) + arr.tobytes()


VALID_IDX = [_idx((3, 28, 28)), _idx((10,))]
SCRATCH = Path(tempfile.mkdtemp(prefix="fastdl-fuzz-"))
VALID_PARAMS = fastdl.save(fastdl.TwoLayerNet(5, 4, 3, seed=0), SCRATCH / "valid.npz").read_bytes()
_stats = {}


def _classify(target, fn, data):
    s = _stats.setdefault(target, {"examples": 0, "documented": 0, "accepted": 0})
    s["examples"] += 1
    try:
        fn(data)
        s["accepted"] += 1
    except FileFormatError:
        s["documented"] += 1


def mutate(data: bytes, rnd: random.Random) -> bytes:
    b = bytearray(data)
    for _ in range(rnd.randint(1, 8)):
        op = rnd.randrange(4)
        if op == 0 and b:
            b[rnd.randrange(len(b))] ^= 1 << rnd.randrange(8)
        elif op == 1 and b:
            del b[rnd.randrange(len(b)):]
        elif op == 2:
            pos = rnd.randrange(len(b) + 1)
            b[pos:pos] = rnd.randbytes(rnd.randint(1, 16))
        elif b:
            pos = rnd.randrange(len(b))
            b[pos:pos + 4] = rnd.choice([b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x7f\xff\xff\xff"])
    return bytes(b)


def parse_idx_file(data):
    datasets.parse_idx(datasets._inflate(data, "fuzz"), "fuzz")


def load_params(data):
    path = SCRATCH / "fuzzed.npz"
    path.write_bytes(data)
    fastdl.load(path)


@FUZZ
@given(data=st.binary(max_size=2048))
def test_idx_reader_random_bytes(data):
    _classify("IDX reader, random bytes", parse_idx_file, data)


@FUZZ
@given(seed=st.integers(0, 2**32 - 1), which=st.integers(0, 1), compress=st.booleans())
def test_idx_reader_mutated_files(seed, which, compress):
    data = mutate(VALID_IDX[which], random.Random(seed))
    _classify("IDX reader, mutated files", parse_idx_file, gzip.compress(data) if compress else data)


@FUZZ
@given(seed=st.integers(0, 2**32 - 1), which=st.integers(0, 1))
def test_idx_reader_mutated_gzip_streams(seed, which):
    _classify("IDX reader, mutated gzip", parse_idx_file, mutate(gzip.compress(VALID_IDX[which]), random.Random(seed)))


@FUZZ
@given(data=st.binary(max_size=4096))
def test_params_loader_random_bytes(data):
    _classify("parameter loader, random bytes", load_params, data)


@FUZZ
@given(seed=st.integers(0, 2**32 - 1))
def test_params_loader_mutated_files(seed):
    _classify("parameter loader, mutated files", load_params, mutate(VALID_PARAMS, random.Random(seed)))


def test_huge_header_claims_allocate_nothing():
    claims = bytes([0, 0, 8, 3]) + (60000).to_bytes(4, "big") + (2**16).to_bytes(4, "big") * 2   # 257 GB
    with pytest.raises(FileFormatError, match="declares"):
        datasets.parse_idx(claims)
    bomb = gzip.compress(b"\0" * (datasets.MAX_RAW_BYTES + 10))
    with pytest.raises(FileFormatError, match="inflates to more than"):
        datasets._inflate(bomb, "bomb")


def test_fuzz_figures_are_recorded():
    """Runs after the fuzz tests in this module; records their figures for docs/reliability.md."""
    if not _stats:
        pytest.skip("run with the fuzz tests to record figures")
    for target, s in _stats.items():
        ok = s["documented"] + s["accepted"] == s["examples"]
        record("Parsers under fuzzing", target, "-", "FileFormatError or a valid result",
               f"{s['documented']} documented errors, {s['accepted']} accepted, "
               f"{s['examples'] - s['documented'] - s['accepted']} other", ok,
               examples=s["examples"])
        assert ok
