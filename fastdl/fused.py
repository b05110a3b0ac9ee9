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
    add_bias_(z, b)                    z += b
    bias_relu_(z, b)                   z = max(z + b, 0)
    bias_sigmoid_(z, b)                z = sigmoid(z + b)
    colsum_(out, dy)                   out = dy.sum(axis=0)
    relu_grad_colsum_(dh, h, db)       dh *= (h > 0);  db = dh.sum(axis=0)   (h: the ReLU output)
    sigmoid_grad_colsum_(dh, y, db)    dh *= y (1 - y); db = dh.sum(axis=0)
    softmax_xent_(dz, z, t) -> loss    dz = (softmax(z) - onehot(t)) / N; the mean loss, on the device

and, optionally (the defaults here serve a backend that lacks them):

    matmul_(out, a, b)                 out = a @ b        (default: ``xp.matmul(a, b, out=out)``)
    softmax_head_(z, dz, h, W, b, t, dW, db, dh, db_h, relu) -> loss
                                       the last layer and the loss, forward and backward, from the
                                       hidden output h (after its activation, ReLU if relu else
                                       sigmoid) to dh, the gradient before that activation, and
                                       db_h its bias gradient (default: the kernels above)
    InputLayer(bk, W, b, dW, x_train, batch_size, activation)
                                       the first layer, which reads the training set itself:
                                       ``forward(idx, y)``: y = act(x_train[idx] @ W + b);
                                       ``backward(dz)``: dW = x_train[idx]^T @ dz, for the same idx

No allocation and no host round trip happens per step; the loss stays where the backend computed
it.
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


def _softmax_head(bk, matmul):
    """The last layer and the loss, forward and backward, as the plain composition; a backend may
    provide it as one kernel (``softmax_head_``) with the same signature."""
    def head(z, dz, h, W, b, t, dW, db, dh, db_h, relu):
        matmul(z, h, W)
        bk.add_bias_(z, b)
        loss = bk.softmax_xent_(dz, z, t)
        bk.colsum_(db, dz)
        matmul(dW, h.T, dz)
        matmul(dh, dz, W.T)
        # the hidden activation's backward + its bias gradient
        (bk.relu_grad_colsum_ if relu else bk.sigmoid_grad_colsum_)(dh, h, db_h)
        return loss
    return head


class InputLayer:
    """The first layer, ``y = act(x_train[idx] @ W + b)``, as a gather then a GEMM: the batch's
    rows are copied out of the training set into a preallocated buffer, which the backward GEMM
    reads again. ``activation``: "relu", "sigmoid", or None for the bias alone."""

    byte_coded = False

    def __init__(self, bk, W, b, dW, x_train, batch_size: int, activation):
        self.bk = bk
        self.W, self.b, self.dW, self.x_train = W, b, dW, x_train
        self.act = {"relu": bk.bias_relu_, "sigmoid": bk.bias_sigmoid_, None: bk.add_bias_}[activation]
        self.X = bk.xp.empty((batch_size, W.shape[0]), dtype=W.dtype)
        self.x = self.X
        self.matmul = _matmul(bk)

    def forward(self, idx, y):
        n = idx.shape[0]
        self.x = self.X if n == self.X.shape[0] else self.X[:n]     # a new view for a partial batch only
        self.bk.gather_rows_(self.x, self.x_train, idx)
        self.matmul(y, self.x, self.W)
        self.act(y, self.b)

    def backward(self, dz):
        """dW = x^T dz for the rows of the last forward (dz: the gradient before the activation)."""
        self.matmul(self.dW, self.x.T, dz)


def _matmul(bk):
    mm = getattr(bk, "matmul_", None)
    if mm is not None:
        return mm
    matmul = bk.xp.matmul

    def mm(out, a, b):
        matmul(a, b, out=out)
    return mm


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
    T = xp.empty(B, dtype=xp.int64)
    H = [xp.empty((B, s), dtype=dt) for s in sizes[1:]]      # layer outputs (after the activation)
    D = [xp.empty((B, s), dtype=dt) for s in sizes[1:]]      # gradients before the activation
    dW = [xp.empty_like(w) for w in W]
    db = [xp.empty_like(v) for v in b]
    grads = {}
    for i in range(L):
        grads[f"W{i + 1}"], grads[f"b{i + 1}"] = dW[i], db[i]
    matmul = _matmul(bk)
    first = getattr(bk, "InputLayer", InputLayer)(bk, W[0], b[0], dW[0], x_train, B,
                                                  network.activation if L > 1 else None)
    # Views for the full batch are made once; only an epoch's last, partial batch makes new ones.
    full = (T, [h for h in H], [d for d in D])

    def views(n):
        if n == B:
            return full
        return T[:n], [h[:n] for h in H], [d[:n] for d in D]

    update = bk.fused_update(optimizer, params, grads)
    if update is None:
        def update():
            optimizer.update(params, grads, bk)

    if L == 1:              # no hidden layer: the input layer is the output layer
        def step(idx):
            t, Hn, Dn = views(idx.shape[0])
            bk.gather_rows_(t, t_train, idx)
            z, dz = Hn[0], Dn[0]
            first.forward(idx, z)                     # x_train[idx] @ W1 + b1
            loss = bk.softmax_xent_(dz, z, t)
            bk.colsum_(db[0], dz)
            first.backward(dz)
            update()
            return loss
    else:
        head = getattr(bk, "softmax_head_", None) or _softmax_head(bk, matmul)
        relu = network.activation == "relu"

        def step(idx):
            t, Hn, Dn = views(idx.shape[0])
            bk.gather_rows_(t, t_train, idx)
            first.forward(idx, Hn[0])                 # act(x_train[idx] @ W1 + b1), the gather included
            for i in range(1, L - 1):
                matmul(Hn[i], Hn[i - 1], W[i])
                act(Hn[i], b[i])
            loss = head(Hn[L - 1], Dn[L - 1], Hn[L - 2], W[L - 1], b[L - 1], t,
                        dW[L - 1], db[L - 1], Dn[L - 2], db[L - 2], relu)
            for i in range(L - 2, 0, -1):
                dz, below = Dn[i], Hn[i - 1]
                matmul(dW[i], below.T, dz)
                matmul(Dn[i - 1], dz, W[i].T)
                act_grad(Dn[i - 1], below, db[i - 1])     # activation backward + bias gradient
            first.backward(Dn[0])
            update()
            return loss

    step.byte_coded = first.byte_coded         # for the tests: whether rows come from byte codes
    return step
