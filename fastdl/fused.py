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
"""

from __future__ import annotations

from .backends.contract import ACTIVATIONS, FUSED_STEP


def compile_train_step(network, optimizer, batch_size: int, x_train, t_train):
    bk = network.backend
    if FUSED_STEP not in bk.CAPABILITIES:
        raise ValueError(f"backend {bk.name!r} does not declare the {FUSED_STEP!r} capability")
    xp, dt, params, L = bk.xp, network.dtype, network.params, network.n_layers
    W = [params[f"W{i}"] for i in range(1, L + 1)]
    b = [params[f"b{i}"] for i in range(1, L + 1)]
    sizes = [W[0].shape[0]] + [w.shape[1] for w in W]
    act, act_grad = (getattr(bk, hook) for hook in ACTIVATIONS[network.activation])
    B = batch_size
    T = xp.empty(B, dtype=xp.int64)
    H = [xp.empty((B, s), dtype=dt) for s in sizes[1:-1]]    # hidden outputs (after the activation)
    D = [xp.empty((B, s), dtype=dt) for s in sizes[1:-1]]    # their gradients before the activation
    dW = [xp.empty_like(w) for w in W]
    db = [xp.empty_like(v) for v in b]
    grads = {}
    for i in range(L):
        grads[f"W{i + 1}"], grads[f"b{i + 1}"] = dW[i], db[i]
    update = bk.make_update(bk, optimizer, params, grads)
    matmul = bk.matmul_
    # Views for the full batch are made once; only an epoch's last, partial batch makes new ones.
    full = (T, H, D)

    def views(n):
        return full if n == B else (T[:n], [h[:n] for h in H], [d[:n] for d in D])

    if L == 1:              # no hidden layer: the input layer is the output layer
        first = bk.InputLayer(bk, W[0], b[0], dW[0], x_train, B, "identity")
        Z, DZ = xp.empty((B, sizes[1]), dtype=dt), xp.empty((B, sizes[1]), dtype=dt)

        def step(idx):
            n = idx.shape[0]
            t = T if n == B else T[:n]
            z, dz = (Z, DZ) if n == B else (Z[:n], DZ[:n])
            bk.gather_rows_(t, t_train, idx)
            first.forward(idx, z)                     # x_train[idx] @ W1 + b1
            loss = bk.softmax_xent_(dz, z, t)
            bk.colsum_(db[0], dz)
            first.backward(dz)
            update()
            return loss
    else:
        first = bk.InputLayer(bk, W[0], b[0], dW[0], x_train, B, network.activation)
        head = bk.OutputLayer(bk, W[-1], b[-1], dW[-1], db[-1], B, network.activation)

        def step(idx):
            t, Hn, Dn = views(idx.shape[0])
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
            update()
            return loss

    step.byte_coded = first.byte_coded         # for the tests: whether rows come from byte codes
    return step
