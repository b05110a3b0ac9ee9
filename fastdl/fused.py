"""The fused training step shared by the accelerated backends.

``compile_train_step(network, optimizer, batch_size, x_train, t_train)`` returns
``step(idx) -> loss``: the same arithmetic as the layer path (forward, backward,
``optimizer.update``) with every intermediate preallocated and each stretch between two GEMMs done
by one fused in-place kernel. The step owns the training data from then on. A backend opts in by
defining ``compile_train_step = fastdl.fused.compile_train_step`` and the functions below (a
trailing underscore means "writes into its first array argument"):

    fused_update(optimizer, params, grads) -> update() or None
                                       one call updating every parameter, when the backend has
                                       a fused kernel for this optimizer (else optimizer.update)
    gather_rows_(out, src, idx)        out[r] = src[idx[r]]           (rows of a matrix or a vector)
    gather_decoded_rows_(out, codes, idx, scale)                      (optional)
                                       out[r] = codes[idx[r]] / scale  (uint8 codes, see byte_codes)
    add_bias_(z, b)                    z += b
    bias_relu_(z, b)                   z = max(z + b, 0)
    bias_sigmoid_(z, b)                z = sigmoid(z + b)
    colsum_(out, dy)                   out = dy.sum(axis=0)
    relu_grad_colsum_(dh, h, db)       dh *= (h > 0);  db = dh.sum(axis=0)   (h: the ReLU output)
    sigmoid_grad_colsum_(dh, y, db)    dh *= y (1 - y); db = dh.sum(axis=0)
    softmax_xent_(dz, z, t) -> loss    dz = (softmax(z) - onehot(t)) / N; the mean loss, on the device

GEMMs go through ``xp.matmul(..., out=)`` (BLAS / cuBLAS). No allocation and no host round trip
happens per step; the loss stays where the backend computed it.
"""

from __future__ import annotations


def byte_codes(x, xp, chunk: int = 512):
    """``(codes, scale)`` with ``codes`` uint8 and ``codes / scale == x`` exactly, or None.

    MNIST pixels scaled to [0, 1] are ``k / 255``: kept as one byte per value instead of four, the
    random rows a step gathers come from a 47 MB table instead of a 188 MB one (fewer cache misses,
    a quarter of the memory traffic), and dividing by the scale while gathering gives back the very
    same floats. Checked value by value, a block of rows at a time (no full-size temporary);
    anything else (other data, NaN, negatives) gets None and the plain gather."""
    if x.ndim != 2 or x.dtype.kind != "f" or x.size == 0:
        return None
    codes = xp.empty(x.shape, dtype=xp.uint8)
    for scale in (255, 1):
        s = x.dtype.type(scale)
        for lo in range(0, x.shape[0], chunk):
            block = x[lo:lo + chunk]
            c = xp.rint(block * s)
            if not (float(c.min()) >= 0 and float(c.max()) <= 255):
                break
            c = c.astype(xp.uint8)
            if not bool(xp.array_equal(c.astype(x.dtype) / s, block)):
                break
            codes[lo:lo + chunk] = c
        else:
            return codes, s
    return None


def compile_train_step(network, optimizer, batch_size: int, x_train, t_train):
    bk = network.backend
    xp = bk.xp
    dt = network.dtype
    params = network.params
    L = network.n_layers
    W = [params[f"W{i}"] for i in range(1, L + 1)]
    b = [params[f"b{i}"] for i in range(1, L + 1)]
    sizes = [W[0].shape[0]] + [w.shape[1] for w in W]
    act = bk.bias_relu_ if network.activation == "relu" else bk.bias_sigmoid_
    act_grad = bk.relu_grad_colsum_ if network.activation == "relu" else bk.sigmoid_grad_colsum_
    B = batch_size
    X = xp.empty((B, sizes[0]), dtype=dt)
    T = xp.empty(B, dtype=xp.int64)
    H = [xp.empty((B, s), dtype=dt) for s in sizes[1:]]      # layer outputs (after the activation)
    D = [xp.empty((B, s), dtype=dt) for s in sizes[1:]]      # gradients before the activation
    dW = [xp.empty_like(w) for w in W]
    db = [xp.empty_like(v) for v in b]
    grads = {}
    for i in range(L):
        grads[f"W{i + 1}"], grads[f"b{i + 1}"] = dW[i], db[i]
    matmul = xp.matmul
    # Views for the full batch are made once; only an epoch's last, partial batch makes new ones.
    full = (X, T, [h for h in H], [d for d in D])

    def views(n):
        if n == B:
            return full
        return X[:n], T[:n], [h[:n] for h in H], [d[:n] for d in D]

    gather_x = _row_gatherer(bk, x_train)
    update = bk.fused_update(optimizer, params, grads)
    if update is None:
        def update():
            optimizer.update(params, grads, bk)

    def step(idx):
        x, t, Hn, Dn = views(idx.shape[0])
        gather_x(x, idx)
        bk.gather_rows_(t, t_train, idx)
        inp = x
        for i in range(L - 1):
            matmul(inp, W[i], out=Hn[i])
            act(Hn[i], b[i])
            inp = Hn[i]
        z, dz = Hn[L - 1], Dn[L - 1]
        matmul(inp, W[L - 1], out=z)
        bk.add_bias_(z, b[L - 1])
        loss = bk.softmax_xent_(dz, z, t)
        bk.colsum_(db[L - 1], dz)
        for i in range(L - 1, -1, -1):
            below = Hn[i - 1] if i > 0 else x
            matmul(below.T, dz, out=dW[i])
            if i > 0:
                dprev = Dn[i - 1]
                matmul(dz, W[i].T, out=dprev)
                act_grad(dprev, below, db[i - 1])     # activation backward + bias gradient, one pass
                dz = dprev
        update()
        return loss

    step.byte_coded = gather_x.byte_coded      # for the tests: which gather runs
    return step


def _row_gatherer(bk, x_train):
    """gather(out, idx): out[r] = x_train[idx[r]], from byte codes where the backend can decode
    them and the data allows (then only the codes are kept here), else from x_train itself."""
    decode = getattr(bk, "gather_decoded_rows_", None)
    coded = byte_codes(x_train, bk.xp) if decode is not None else None
    if coded is None:
        def gather(out, idx):
            bk.gather_rows_(out, x_train, idx)
    else:
        codes, scale = coded

        def gather(out, idx):
            decode(out, codes, idx, scale)
    gather.byte_coded = coded is not None
    return gather
