"""PyTorch as an independent oracle (optional: skipped, with the reason, where torch is not
installed; ``pip install torch`` adds it): every kernel, forward and backward through autograd,
and every optimizer over several steps against torch.optim (or, for Adam, whose folded step size
differs from torch.optim.Adam in where eps goes, the book's formula written in torch), on every
backend, in both dtypes."""

import numpy as np
import pytest

from conftest import tol
from fastdl import optimizers
from test_kernels import labels, rand, run

torch = pytest.importorskip("torch", reason="PyTorch is not installed (pip install torch): the outside oracle is skipped")


def T(a, grad=False):
    return torch.tensor(np.asarray(a), requires_grad=grad)


def same(got, want, dtype, terms=1):
    got = np.asarray(got)
    assert got.dtype == np.dtype(dtype)
    np.testing.assert_allclose(got, want.detach().numpy() if hasattr(want, "detach") else want, **tol(dtype, terms))


@pytest.mark.parametrize("n,d,m", [(1, 5, 3), (37, 13, 10), (100, 784, 50)])
def test_affine(backend, dtype, n, d, m):
    x, W, b, dy = rand((n, d), dtype, 0), rand((d, m), dtype, 1), rand(m, dtype, 2), rand((n, m), dtype, 3)
    tx, tW, tb = T(x, True), T(W, True), T(b, True)
    y = tx @ tW + tb
    y.backward(T(dy))
    same(run(backend, "affine_forward", x, W, b), y, dtype, d)
    dx, dW, db = run(backend, "affine_backward", dy, x, W)
    for g, w, terms in ((dx, tx.grad, m), (dW, tW.grad, n), (db, tb.grad, n)):
        same(g, w, dtype, terms)


@pytest.mark.parametrize("shape", [(1, 1), (37, 13)])
def test_activations(backend, dtype, shape):
    x, dy = rand(shape, dtype, 0, 5), rand(shape, dtype, 1)
    x.flat[::3] = 0
    for kernel, fn in (("relu", torch.relu), ("sigmoid", torch.sigmoid)):
        tx = T(x, True)
        y = fn(tx)
        y.backward(T(dy))
        out = run(backend, f"{kernel}_forward", x)
        y_got, saved = (out[0], out[1]) if kernel == "relu" else (out, out)
        same(y_got, y, dtype)
        same(run(backend, f"{kernel}_backward", dy, saved), tx.grad, dtype)


@pytest.mark.parametrize("n,c", [(1, 10), (37, 10), (5, 3)])
def test_softmax_cross_entropy(backend, dtype, n, c):
    z, t = rand((n, c), dtype, 0, 4), labels(n, c)
    z[0, 0] = 1e3 if n > 1 else z[0, 0]
    tz = T(z, True)
    loss = torch.nn.functional.cross_entropy(tz, torch.tensor(t))
    loss.backward()
    got, probs = run(backend, "softmax_cross_entropy_forward", z, t)
    np.testing.assert_allclose(float(got), loss.item(), **tol(dtype, c))
    same(probs, torch.softmax(T(z), dim=1), dtype)
    same(run(backend, "softmax_cross_entropy_backward", probs, t), tz.grad, dtype)


def _book_adam_in_torch(p, grads, lr=0.01, b1=0.9, b2=0.999, eps=1e-7):
    m, v = torch.zeros_like(p), torch.zeros_like(p)
    for it, g in enumerate(grads, start=1):
        lr_t = lr * np.sqrt(1.0 - b2 ** it) / (1.0 - b1 ** it)
        m += (1 - b1) * (g - m)
        v += (1 - b2) * (g * g - v)
        p = p - lr_t * m / (torch.sqrt(v) + eps)
    return p


@pytest.mark.parametrize("name", ["SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam"])
def test_optimizers_over_several_steps(backend, dtype, name):
    p0 = rand((37, 13), dtype, 0)
    grads = [rand((37, 13), dtype, i) for i in range(1, 6)]
    opt = optimizers.get_optimizer(name, lr=0.01)
    params = {"p": backend.asarray(p0.copy())}
    for g in grads:
        opt.update(params, {"p": backend.asarray(g)}, backend)
    tg = [T(g) for g in grads]
    if name == "Adam":
        want = _book_adam_in_torch(T(p0), tg)
    else:
        tp = T(p0.copy(), True)
        torch_opt = {"SGD": lambda: torch.optim.SGD([tp], lr=0.01),
                     "Momentum": lambda: torch.optim.SGD([tp], lr=0.01, momentum=0.9),
                     "Nesterov": lambda: torch.optim.SGD([tp], lr=0.01, momentum=0.9, nesterov=True),
                     "AdaGrad": lambda: torch.optim.Adagrad([tp], lr=0.01, eps=1e-7),
                     "RMSprop": lambda: torch.optim.RMSprop([tp], lr=0.01, alpha=0.99, eps=1e-7)}[name]()
        for g in tg:
            tp.grad = g.clone()
            torch_opt.step()
        want = tp
    got = backend.to_numpy(params["p"])
    rtol = 1e-12 if dtype == np.float64 else 2e-5
    np.testing.assert_allclose(got, want.detach().numpy(), rtol=rtol, atol=rtol * 1e-2, err_msg=name)
