import io
import json
import os
import re
import zipfile

import numpy as np
import pytest

import fastdl
from fastdl.errors import FileFormatError


def _entries(path) -> dict:
    """A .npz file's zip entries by name, as bytes."""
    with zipfile.ZipFile(path) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def test_round_trip_on_each_backend(backend, tmp_path, dtype):
    net = fastdl.MultiLayerNet(6, [5, 4], 3, activation="sigmoid", dtype=dtype, backend=backend, seed=0)
    path = fastdl.save(net, tmp_path / "p.npz")
    for target in ("numpy", backend.name):
        back = fastdl.load(path, backend=target)
        assert back.config() == net.config() and back.dtype == net.dtype and back.backend.name == target
        for k, v in net.params_numpy().items():
            np.testing.assert_array_equal(back.params_numpy()[k], v)
    x = np.random.default_rng(0).standard_normal((3, 6)).astype(dtype)
    np.testing.assert_array_equal(back.backend.to_numpy(back.predict(x)), backend.to_numpy(net.predict(x)))


def test_a_checkpoint_loads_as_the_network_it_holds(backend, tmp_path):
    """A run stopped before it wrote params.npz: its checkpoint gives the network as checkpointed
    (Batch Norm's averages too), on any backend; a checkpoint short of a parameter is refused."""
    from fastdl.optimizers import Adam
    from toy_data import blobs
    x, t = blobs(200)
    net = fastdl.MultiLayerNet(8, [6], 3, batch_norm=True, dropout=0.2, backend=backend, seed=0)
    tr = fastdl.Trainer(net, Adam(0.01), x, t, iterations=5, batch_size=50, progress=False, seed=0,
                        checkpoint=tmp_path / "ckpt.npz")
    tr.fit()
    for target in ("numpy", backend.name):
        back = fastdl.load(tmp_path / "ckpt.npz", backend=target)
        assert back.config() == net.config() and back.backend.name == target
        for k, v in {**net.params_numpy(), **net.buffers_numpy()}.items():
            np.testing.assert_array_equal({**back.params_numpy(), **back.buffers_numpy()}[k], v)
    a, m = fastdl.io.read_arrays(tmp_path / "ckpt.npz", "fastdl-checkpoint")
    del a["param.b2"], m["arrays"]["param.b2"]
    fastdl.io.write_arrays(tmp_path / "short.npz", a, m)
    with pytest.raises(FileFormatError, match="do not fit the declared architecture"):
        fastdl.load(tmp_path / "short.npz")


def test_overwrite_is_atomic_and_leaves_no_temp_files(tmp_path):
    a = fastdl.TwoLayerNet(4, 3, 2, seed=0)
    b = fastdl.TwoLayerNet(4, 3, 2, seed=1)
    fastdl.save(a, tmp_path / "p.npz")
    fastdl.save(b, tmp_path / "p.npz")
    assert os.listdir(tmp_path) == ["p.npz"]
    np.testing.assert_array_equal(fastdl.load(tmp_path / "p.npz").params_numpy()["W1"], b.params_numpy()["W1"])


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp_file(tmp_path, monkeypatch):
    """A write that fails half-way (a full disk: fsync raises) raises, leaves the file it would
    have replaced as it was, and removes its temporary file."""
    a = fastdl.TwoLayerNet(4, 3, 2, seed=0)
    path = fastdl.save(a, tmp_path / "p.npz")
    before = path.read_bytes()

    def full(fd):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match=re.escape(f"cannot write {path} (No space left on device)")):
        fastdl.save(fastdl.TwoLayerNet(4, 3, 2, seed=1), path)      # the file asked for, not the temporary one
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["p.npz"] and path.read_bytes() == before
    np.testing.assert_array_equal(fastdl.load(path).params_numpy()["W1"], a.params_numpy()["W1"])


def test_a_path_that_cannot_be_written_is_named_as_given(tmp_path):
    """It named the temporary file beside it ('.p.npz.b91bs7kl.tmp'), which the caller never gave."""
    (tmp_path / "afile").write_text("")
    net = fastdl.TwoLayerNet(4, 3, 2, seed=0)
    with pytest.raises(NotADirectoryError, match=re.escape(f"cannot write {tmp_path / 'afile' / 'sub' / 'p.npz'}: "
                                                           f"{tmp_path / 'afile' / 'sub'} or a folder above it is a file")):
        fastdl.save(net, tmp_path / "afile" / "sub" / "p.npz")
    (tmp_path / "ro").mkdir()
    os.chmod(tmp_path / "ro", 0o500)
    try:
        if os.access(tmp_path / "ro", os.W_OK):
            pytest.skip("this user writes into read-only folders (root)")
        with pytest.raises(PermissionError, match=re.escape(f"cannot write {tmp_path / 'ro' / 'p.npz'}")):
            fastdl.save(net, tmp_path / "ro" / "p.npz")
    finally:
        os.chmod(tmp_path / "ro", 0o700)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "ro"]


class _Boom:
    """Unpickling this would create a marker file: proof that code ran."""
    marker = None

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickled_object_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    _Boom.marker = str(marker)
    net = fastdl.TwoLayerNet(4, 3, 2, seed=0)
    path = fastdl.save(net, tmp_path / "p.npz")
    # Replace b1 by an object array holding the payload, keeping the manifest.
    entries = _entries(path)
    buf = io.BytesIO()
    np.save(buf, np.array([_Boom()], dtype=object), allow_pickle=True)
    entries["b1.npy"] = buf.getvalue()
    evil = tmp_path / "evil.npz"
    with zipfile.ZipFile(evil, "w") as zf:
        for n, data in entries.items():
            zf.writestr(n, data)
    with pytest.raises(FileFormatError, match="Python objects"):
        fastdl.load(evil)
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["random", "truncated", "empty", "no_manifest", "bad_json", "shape_lie", "nan"])
def test_malformed_files_raise_file_format_error(tmp_path, damage):
    net = fastdl.TwoLayerNet(4, 3, 2, seed=0)
    path = fastdl.save(net, tmp_path / "p.npz")
    data = path.read_bytes()
    if damage == "random":
        path.write_bytes(np.random.default_rng(0).bytes(500))
    elif damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "no_manifest":
        np.savez(path, W1=np.zeros((4, 3)))
    else:
        arrays, manifest = fastdl.io.read_arrays(path)
        if damage == "bad_json":
            buf = io.BytesIO()
            np.savez(buf, **arrays, __manifest__=np.frombuffer(b"{not json", dtype=np.uint8))
            path.write_bytes(buf.getvalue())
        elif damage == "shape_lie":
            manifest["arrays"]["W1"]["shape"] = [4, 99]
            fastdl.io.write_arrays(path, arrays, manifest)
        else:
            arrays["W1"][0, 0] = np.nan
            fastdl.io.write_arrays(path, arrays, manifest)
    with pytest.raises(FileFormatError):
        fastdl.load(path)


def test_huge_header_is_refused_before_allocating(tmp_path):
    net = fastdl.TwoLayerNet(4, 3, 2, seed=0)
    path = fastdl.save(net, tmp_path / "p.npz")
    entries = _entries(path)
    hdr = io.BytesIO()
    np.lib.format.write_array_header_1_0(hdr, {"descr": "<f4", "fortran_order": False, "shape": (2**40,)})
    entries["b1.npy"] = hdr.getvalue() + b"\0" * 8
    with zipfile.ZipFile(path, "w") as zf:
        for n, d in entries.items():
            zf.writestr(n, d)
    with pytest.raises(FileFormatError, match="declares shape"):
        fastdl.load(path)


def test_manifest_describes_the_network(tmp_path):
    net = fastdl.MultiLayerNet(6, [5, 4], 3, dtype="float64", seed=0)
    arrays, manifest = fastdl.io.read_arrays(fastdl.save(net, tmp_path / "p.npz"))
    assert manifest["architecture"] == net.config() and manifest["dtype"] == "float64"
    assert manifest["arrays"]["W2"] == {"shape": [5, 4], "dtype": "float64"}
    json.dumps(manifest)


def _rewritten(path, arrays=None, manifest=None, entries=None):
    """The file at ``path`` written again with its arrays, manifest or raw zip entries changed."""
    if entries is not None:
        with zipfile.ZipFile(path, "w") as zf:          # stored, as fastdl writes
            for name, data in entries.items():
                zf.writestr(name, data)
        return path
    a, m = fastdl.io.read_arrays(path)
    buf = io.BytesIO()
    manifest = m if manifest is None else manifest(m)
    payload = dict(a if arrays is None else arrays(a))
    payload["__manifest__"] = np.frombuffer(json.dumps(manifest).encode(), dtype=np.uint8)
    np.savez(buf, **payload)
    path.write_bytes(buf.getvalue())
    return path


def _npy(array, version):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, array, version=version)
    return buf.getvalue()


def _with(d, **changes):
    return {**d, **changes}


@pytest.mark.parametrize("case,change,words", [
    ("an array the manifest does not list", dict(arrays=lambda a: _with(a, W9=np.zeros(2, np.float32))),
     "manifest lists arrays ['W1', 'W2', 'b1', 'b2'], file holds ['W1', 'W2', 'W9', 'b1', 'b2']"),
    ("a listed array missing", dict(arrays=lambda a: {k: v for k, v in a.items() if k != "b2"}),
     "file holds ['W1', 'W2', 'b1']"),
    ("arrays not a table", dict(manifest=lambda m: _with(m, arrays=["W1"])), "manifest lists arrays ['W1']"),
    ("a newer format version", dict(manifest=lambda m: _with(m, version=99)),
     "format version 99 is not one this fastdl reads (<= 1); upgrade fastdl"),
    ("a version that is not a number", dict(manifest=lambda m: _with(m, version="1")), "format version '1'"),
    ("sizes that are not numbers", dict(manifest=lambda m: _with(m, architecture=_with(m["architecture"], input_size="x"))),
     "manifest architecture"),
    ("no architecture", dict(manifest=lambda m: _with(m, architecture=None)), "is malformed"),
    ("an architecture the arrays do not fit", dict(manifest=lambda m: _with(m, architecture=_with(m["architecture"], hidden_sizes=[5]))),
     "do not fit the declared architecture [4, 5, 2]"),
    ("an unknown activation", dict(manifest=lambda m: _with(m, architecture=_with(m["architecture"], activation="tanh"))),
     "is not usable"),
    ("a manifest that is not bytes", dict(entries="manifest_f32"), "manifest entry is not a small byte string"),
    ("an unknown .npy version", dict(entries="npy_v9"), "malformed .npy header"),
])
def test_each_check_of_a_params_file_refuses_its_case(tmp_path, case, change, words):
    """Every check between a file and a network, reached by a file made to fail just that one."""
    path = fastdl.save(fastdl.TwoLayerNet(4, 3, 2, seed=0), tmp_path / "p.npz")
    if change.get("entries"):
        entries = _entries(path)
        if change["entries"] == "manifest_f32":
            entries["__manifest__.npy"] = _npy(np.zeros(3, np.float32), (1, 0))
        else:
            raw = bytearray(entries["b1.npy"])
            raw[6] = 9                                   # the major version after the magic string
            entries["b1.npy"] = bytes(raw)
        _rewritten(path, entries=entries)
    else:
        _rewritten(path, **change)
    with pytest.raises(FileFormatError) as err:
        fastdl.load(path)
    assert words in str(err.value) and str(path) in str(err.value), (case, str(err.value))


def test_npy_entries_of_format_2_and_3_load(tmp_path):
    """NumPy writes format 2.0 (or 3.0) headers where 1.0's cannot hold them; such a file is as good."""
    net = fastdl.TwoLayerNet(4, 3, 2, seed=0)
    path = fastdl.save(net, tmp_path / "p.npz")
    entries = _entries(path)
    params = net.params_numpy()
    entries["W1.npy"], entries["b2.npy"] = _npy(params["W1"], (2, 0)), _npy(params["b2"], (3, 0))
    loaded = fastdl.load(_rewritten(path, entries=entries))
    for k, v in params.items():
        np.testing.assert_array_equal(loaded.params_numpy()[k], v)


def test_the_manifest_name_is_reserved(tmp_path):
    with pytest.raises(ValueError, match="reserved"):
        fastdl.io.write_arrays(tmp_path / "p.npz", {"__manifest__": np.zeros(1)}, {})
    assert not (tmp_path / "p.npz").exists()
