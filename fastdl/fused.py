"""The fused training step, built by the trainer for any backend that declares it.

``compile_train_step(network, optimizer, batch_size, x_train, t_train)`` returns ``step(idx) ->
loss``: the same arithmetic as the layer path (forward, backward, ``optimizer.update``) with every
intermediate preallocated and each stretch between two GEMMs done by one in-place hook of the
contract (``fastdl/backends/contract.py``, capability ``fused_step``):

    first = bk.InputLayer(...)      gather the batch's rows, x @ W1 + b1, activation; later dW1
    bk.matmul_ + activation hook    each middle layer
    head = bk.OutputLayer(...)      the last layer, the loss, and the backward down to the last
                                    hidden activation's input
    bk.matmul_ + activation grad    back through the middle layers
    update = bk.make_update(...)    every parameter

The step owns the training data from then on. It never allocates on the backend except for the
views an epoch's last, partial batch needs, and the loss stays where the backend computed it.

Chapter 6's networks get the same structure with three additions: weight decay (the penalty added
to the loss and lambda W to each dW, by ``axpy_``, before the update); Batch Norm after a hidden
Affine (its pure kernels; the block's activation then runs after the normalisation); Dropout after
a hidden activation (the network's own layer, so its masks and counters are the layer path's).
Those pure kernels allocate their outputs; the head then stops at the gradient of its input
(activation "identity") and each block's backward runs here. Such steps are never captured for
replay (``step.uncapturable`` says why); the plain ones are (``fastdl.replay``).
"""

from __future__ import annotations

from .backends.contract import ACTIVATIONS, FUSED_STEP
from .backends.guard import Unchecked


def compile_train_step(network, optimizer, batch_size: int, x_train, t_train):
    bk = network.backend
    if FUSED_STEP not in bk.CAPABILITIES:
        raise ValueError(f"backend {bk.name!r} does not declare the {FUSED_STEP!r} capability")
    xp, params, L = bk.xp, network.params, network.n_layers
    W = [params[f"W{i}"] for i in range(1, L + 1)]
    b = [params[f"b{i}"] for i in range(1, L + 1)]
    B = batch_size
    T = xp.empty(B, dtype=xp.int64)
    dW = [xp.empty_like(w) for w in W]
    db = [xp.empty_like(v) for v in b]
    grads = {}
    for i in range(L):
        grads[f"W{i + 1}"], grads[f"b{i + 1}"] = dW[i], db[i]
    for i in network._norms:
        grads[f"gamma{i}"], grads[f"beta{i}"] = xp.empty_like(params[f"gamma{i}"]), xp.empty_like(params[f"beta{i}"])
    update = bk.make_update(bk, optimizer, params, grads)
    # Past the backend's argument guard from here: every array the step passes is its own buffer,
    # made above from the network's (x_train's and t_train's rows: checked by the trainer)
    bk = Unchecked(bk)
    if network.weight_decay:
        lam, half = network.weight_decay, network.dtype.type(0.5 * network.weight_decay)
        plain_update = update

        def update(loss):
            for w, g in zip(W, dW):                    # as the layer path: penalty with W before
                loss = loss + half * bk.sum_squares(w)  # the update, and dW + lambda W
                bk.axpy_(g, lam, w)
            plain_update()
            return loss
    else:
        plain_update = update

        def update(loss):
            plain_update()
            return loss

    build = _extended if (network._norms or network._dropouts) else _shallow if L == 1 else _plain
    step, first = build(network, bk, B, x_train, t_train, T, W, b, dW, db, grads, update)
    step.byte_coded = first.byte_coded         # for the tests: whether rows come from byte codes
    # Whether a block of these steps can be captured and replayed (fastdl.replay), or why not
    step.uncapturable = ("Batch Norm, Dropout and weight decay allocate in every step"
                         if build is _extended or network.weight_decay else None)
    return step


def _shallow(network, bk, B, x_train, t_train, T, W, b, dW, db, grads, update):
    """No hidden layer: the input layer is the output layer."""
    xp, dt = bk.xp, network.dtype
    first = bk.InputLayer(bk, W[0], b[0], dW[0], x_train, B, "identity")
    Z, DZ = xp.empty((B, W[0].shape[1]), dtype=dt), xp.empty((B, W[0].shape[1]), dtype=dt)

    def step(idx):
        n = idx.shape[0]
        t = T if n == B else T[:n]
        z, dz = (Z, DZ) if n == B else (Z[:n], DZ[:n])
        bk.gather_rows_(t, t_train, idx)
        first.forward(idx, z)                     # x_train[idx] @ W1 + b1
        loss = bk.softmax_xent_(dz, z, t)
        bk.colsum_(db[0], dz)
        first.backward(dz)
        return update(loss)
    return step, first


def _plain(network, bk, B, x_train, t_train, T, W, b, dW, db, grads, update):
    xp, dt, L = bk.xp, network.dtype, network.n_layers
    act, act_grad = (getattr(bk, hook) for hook in ACTIVATIONS[network.activation])
    H = [xp.empty((B, w.shape[1]), dtype=dt) for w in W[:-1]]    # hidden outputs (after the activation)
    D = [xp.empty((B, w.shape[1]), dtype=dt) for w in W[:-1]]    # their gradients before the activation
    first = bk.InputLayer(bk, W[0], b[0], dW[0], x_train, B, network.activation)
    head = bk.OutputLayer(bk, W[-1], b[-1], dW[-1], db[-1], B, network.activation)
    matmul = bk.matmul_
    full = (T, H, D)        # views for the full batch, made once; a partial batch makes new ones

    def step(idx):
        n = idx.shape[0]
        t, Hn, Dn = full if n == B else (T[:n], [h[:n] for h in H], [d[:n] for d in D])
        bk.gather_rows_(t, t_train, idx)
        first.forward(idx, Hn[0])                 # act(x_train[idx] @ W1 + b1), the gather included
        for i in range(1, L - 1):
            matmul(Hn[i], Hn[i - 1], W[i])
            act(Hn[i], b[i])
        loss = head.forward_backward(Dn[-1], db[-2], Hn[-1], t)
        for i in range(L - 2, 0, -1):
            dz, below = Dn[i], Hn[i - 1]
            matmul(dW[i], below.T, dz)
            matmul(Dn[i - 1], dz, W[i].T)
            act_grad(Dn[i - 1], db[i - 1], below)     # activation backward + bias gradient
        first.backward(Dn[0])
        return update(loss)
    return step, first


def _extended(network, bk, B, x_train, t_train, T, W, b, dW, db, grads, update):
    """Hidden blocks Affine -> [Batch Norm] -> activation -> [Dropout], as the layer path."""
    xp, dt, L = bk.xp, network.dtype, network.n_layers
    act, act_grad = (getattr(bk, hook) for hook in ACTIVATIONS[network.activation])
    norms = network._norms
    drops = dict(enumerate(network._dropouts, start=1))
    first = bk.InputLayer(bk, W[0], b[0], dW[0], x_train, B, "identity" if 1 in norms else network.activation)
    head = bk.OutputLayer(bk, W[-1], b[-1], dW[-1], db[-1], B, "identity")
    A = [xp.empty((B, w.shape[1]), dtype=dt) for w in W[:-1]]   # affine output, then the activation's
    D = [xp.empty((B, w.shape[1]), dtype=dt) for w in W[:-1]]   # gradient of each block's output
    zeros = [xp.zeros(w.shape[1], dtype=dt) for w in W[:-1]]    # the activation's bias after Batch Norm
    scratch = [xp.empty(w.shape[1], dtype=dt) for w in W[:-1]]

    def forward(i, z, h_below, idx):
        if i == 1:
            first.forward(idx, z)                      # x W1 + b1 (and the activation, without Batch Norm)
        else:
            bk.matmul_(z, h_below, W[i - 1])
            (bk.add_bias_ if i in norms else act)(z, b[i - 1])
        xn = sd = None
        if i in norms:
            bn = norms[i]
            y, xn, sd, mean, var = bk.batchnorm_forward(z, bn.gamma, bn.beta, bn.EPS)
            bk.running_update(bn.running_mean, mean, bn.momentum, 1.0 - bn.momentum)
            bk.running_update(bn.running_var, var, bn.momentum, 1.0 - bn.momentum)
            z[...] = y
            act(z, zeros[i - 1])
        h = drops[i]._forward(z, train=True) if i in drops else z
        return h, (xn, sd, drops[i].mask if i in drops else None)

    def backward(i, g, a, saved):
        """g: the gradient of block i's output, in place to that of its Affine's output."""
        xn, sd, mask = saved
        if mask is not None:
            g[...] = bk.relu_backward(g, mask)         # Dropout: the same masked pass as the layer
        if i in norms:
            act_grad(g, scratch[i - 1], a)
            dz, grads[f"gamma{i}"][...], grads[f"beta{i}"][...] = bk.batchnorm_backward(g, xn, sd, norms[i].gamma)
            g[...] = dz
            bk.colsum_(db[i - 1], g)
        else:
            act_grad(g, db[i - 1], a)

    def step(idx):
        n = idx.shape[0]
        t = T if n == B else T[:n]
        An, Dn = (A, D) if n == B else ([a[:n] for a in A], [d[:n] for d in D])
        bk.gather_rows_(t, t_train, idx)
        hs, saved = [None], []
        for i in range(1, L):
            h, s = forward(i, An[i - 1], hs[-1], idx)
            hs.append(h)
            saved.append(s)
        loss = head.forward_backward(Dn[-1], scratch[-1], hs[-1], t)
        for i in range(L - 1, 0, -1):
            backward(i, Dn[i - 1], An[i - 1], saved[i - 1])
            if i > 1:
                bk.matmul_(dW[i - 1], hs[i - 1].T, Dn[i - 1])
                bk.matmul_(Dn[i - 2], Dn[i - 1], W[i - 1].T)
            else:
                first.backward(Dn[0])
        return update(loss)
    return step, first
