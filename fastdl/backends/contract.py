"""The kernel contract: every name a backend module provides, stated once.

The registry reads this table when it loads a backend (one that lacks a name it must have is
refused, naming what is missing), the tests read it to run every entry of every backend against
NumPy's, and the CUDA sources read its mode constants (``cuda_defines``). Nothing else states it.

Conventions, for every backend:

* Shapes: x (N, D), W (D, M), b (M,); labels t are int class indices (N,) (one-hot (N, C) rows
  too, for the pure kernels; the rank decides the form). Label values are validated on the host
  before any kernel sees them (``fastdl.validate``), so kernels index with them unchecked.
* dtype rule: float32 in, float32 out; float64 in, float64 out. Hyperparameters arrive as Python
  floats, formed in float64, and are rounded once to the parameter's type.
* Kernels (kind "kernel") are pure: they never modify their inputs and return what backward needs.
* Updates (kind "update") change the parameter and its state arrays in place.
* Hooks (kind "hook", names ending in ``_``) write into the arrays named in ``writes``, which
  come first in the argument list (outputs first, then inputs); they allocate nothing per call
  on numba and cupy (NumPy's may make small temporaries: it is the readable reference).
* Builders (kind "builder") are made once per training run with the run's buffers and are then
  called per step with the step's arrays only; they take the backend module first.
* Capabilities are declared by each backend in ``CAPABILITIES``; a backend provides every entry
  of ``core`` and of each capability it declares.
"""

from __future__ import annotations

from dataclasses import dataclass

CORE = "core"
FUSED_STEP = "fused_step"          # the trainer's whole-step path (fastdl.fused)
GRAPH_REPLAY = "graph_replay"      # blocks of steps captured once and replayed (fastdl.replay)
COMPILE_AHEAD = "compile_ahead"    # a first run's compile shared with a helper process (fastdl.warmup)


@dataclass(frozen=True)
class Entry:
    name: str
    kind: str            # attribute | function | kernel | update | hook | builder
    signature: str
    rule: str            # the formula, or what it is
    writes: str = ""     # the arguments it writes, for updates and hooks
    capability: str = CORE


# Each kernel's, update's and hook's arguments in order, "name:SHAPE" each, checked by ``guard``.
# SHAPE: one letter per dimension, a letter standing for one size across the call ("x:ND W:DM"
# says x's columns are W's rows); "|" between the shapes an argument may have (the call's such
# arguments all taking the first, or all the second); "*" any shape;
# "=" any shape, the same as the call's other "=" arguments'; "#" a number (or a one-element
# array; "#~d": or a one-element device array, read when the kernel runs, as a captured update's). Arrays are float32 or float64, one dtype across the call, unless "~i" (integers),
# "~m" (booleans) or "~a" (any dtype, the same across the call's other "~a" arguments) follows
# the shape (labels "t:N~i|NC~a": integer indices, or one-hot rows of any numbers).
ARGS = {
    "affine_forward": "x:ND W:DM b:M", "affine_backward": "dy:NM x:ND W:DM need_dx:#",
    "relu_forward": "x:ND", "relu_backward": "dy:ND mask:ND~m", "sigmoid_forward": "x:ND",
    "sigmoid_backward": "dy:ND y:ND", "softmax_cross_entropy_forward": "z:NC t:N~i|NC~a",
    "softmax_cross_entropy_backward": "probs:NC t:N~i|NC~a", "sum_squares": "a:*", "scale": "x:* s:#",
    "dropout_forward": "x:* ratio:# key:#", "batchnorm_forward": "x:ND gamma:D beta:D eps:#",
    "batchnorm_inference": "x:ND gamma:D beta:D mean:D var:D eps:#",
    "batchnorm_backward": "dy:ND xn:ND std:D gamma:D",
    "running_update": "avg:= x:= momentum:# one_minus_momentum:#", "axpy_": "y:= a:# x:=",
    "sgd_update": "p:= g:= lr:#", "momentum_update": "p:= g:= v:= lr:# momentum:#",
    "nesterov_update": "p:= g:= v:= lr:# momentum:# momentum_sq:# lr_ahead:#",
    "adagrad_update": "p:= g:= h:= lr:# eps:#",
    "rmsprop_update": "p:= g:= h:= lr:# decay:# one_minus_decay:# eps:#",
    "adam_update": "p:= g:= m:= v:= lr_t:#~d one_minus_beta1:# one_minus_beta2:# eps:#",
    "gather_rows_": "out:RD~a|R~a src:SD~a|S~a idx:R~i", "decode_bytes_": "out:= codes:=~a scale:#",
    "matmul_": "out:MN a:MK b:KN", "add_bias_": "z:NM b:M", "bias_relu_": "z:NM b:M",
    "bias_sigmoid_": "z:NM b:M", "colsum_": "out:M dy:NM", "relu_grad_colsum_": "dh:NM db:M h:NM",
    "sigmoid_grad_colsum_": "dh:NM db:M y:NM", "softmax_xent_": "dz:NC z:NC t:N~i",
}

ENTRIES: tuple[Entry, ...] = (
    # -- module attributes and array plumbing ---------------------------------------------------
    Entry("name", "attribute", "str", "the registry name"),
    Entry("xp", "attribute", "module", "the array module (numpy or cupy)"),
    Entry("device", "attribute", "str", "where arrays live, for messages and reports"),
    Entry("CAPABILITIES", "attribute", "frozenset[str]", "what beyond core this backend provides"),
    Entry("COMPILES", "attribute", "bool",
          "kernels compile on first use (a trainer compiles them before its first step, timed apart: Trainer.warm_up)"),
    Entry("READS_BYTES_FASTER", "attribute", "bool",
          "ByteImages evaluate faster here than their floats: a trainer holds float training and test sets "
          "of k/255 values as ByteImages (fastdl.images.held_as_bytes; the same numbers)"),
    Entry("check_usable", "function", "check_usable()", "raises, with the reason, when it cannot run here"),
    Entry("asarray", "function", "asarray(a, dtype=None) -> array", "C-contiguous, on the device"),
    Entry("to_numpy", "function", "to_numpy(a) -> numpy.ndarray", "a host copy or view"),
    Entry("synchronize", "function", "synchronize()", "wait for queued device work"),
    Entry("is_backend_array", "function", "is_backend_array(a) -> bool", "a is this backend's array type"),
    Entry("describe", "function", "describe() -> dict", "versions, device, threads, for `fastdl info`"),
    Entry("train_scope", "function", "train_scope() -> context manager",
          "process settings (threads, BLAS) a training run needs; restored on exit"),
    # -- pure kernels of the layers -------------------------------------------------------------
    Entry("affine_forward", "kernel", "affine_forward(x, W, b) -> y", "y = x @ W + b"),
    Entry("affine_backward", "kernel", "affine_backward(dy, x, W, need_dx=True) -> dx, dW, db",
          "dx = dy @ W.T (None unless need_dx), dW = x.T @ dy, db = dy.sum(0)"),
    Entry("relu_forward", "kernel", "relu_forward(x) -> y, mask", "y = max(x, 0), mask = x > 0"),
    Entry("relu_backward", "kernel", "relu_backward(dy, mask) -> dx", "dx = dy * mask"),
    Entry("sigmoid_forward", "kernel", "sigmoid_forward(x) -> y", "1 / (1 + exp(-x)), stable for any finite x"),
    Entry("sigmoid_backward", "kernel", "sigmoid_backward(dy, y) -> dx", "dx = dy * y * (1 - y)"),
    Entry("softmax_cross_entropy_forward", "kernel", "softmax_cross_entropy_forward(z, t) -> loss, probs",
          "loss = mean(logsumexp(z) - z[t]), probs = softmax(z)"),
    Entry("softmax_cross_entropy_backward", "kernel", "softmax_cross_entropy_backward(probs, t) -> dz",
          "dz = (probs - onehot(t)) / N"),
    # -- chapter 6: weight decay, Dropout, Batch Normalization ------------------------------------
    Entry("sum_squares", "kernel", "sum_squares(a) -> s", "s = sum(a^2), a 0-d array (the weight decay's 0.5 lambda sum W^2)"),
    Entry("scale", "kernel", "scale(x, s) -> y", "y = s x (Dropout at inference: x (1 - ratio), as the book)"),
    Entry("dropout_forward", "kernel", "dropout_forward(x, ratio, key) -> y, mask",
          "mask = uniform(key, i) > ratio for flat index i (dropout_uniform below), y = x mask"),
    Entry("batchnorm_forward", "kernel", "batchnorm_forward(x, gamma, beta, eps) -> y, xn, std, mean, var",
          "batch statistics per column: std = sqrt(var + eps), xn = (x - mean) / std, y = gamma xn + beta"),
    Entry("batchnorm_inference", "kernel", "batchnorm_inference(x, gamma, beta, mean, var, eps) -> y",
          "y = gamma (x - mean) / sqrt(var + eps) + beta"),
    Entry("batchnorm_backward", "kernel", "batchnorm_backward(dy, xn, std, gamma) -> dx, dgamma, dbeta",
          "dbeta = sum dy, dgamma = sum dy xn, dx = gamma / std (dy - (dbeta + xn dgamma) / N)"),
    Entry("running_update", "update", "running_update(avg, x, momentum, one_minus_momentum)",
          "avg = momentum avg + one_minus_momentum x (Batch Norm's running mean and variance)", "avg"),
    Entry("axpy_", "hook", "axpy_(y, a, x)", "y += a x (the weight decay's lambda W added to dW)", "y"),
    # -- optimizer updates: the book's formulas, in its order; the scalars are
    #    Optimizer.kernel_hyperparameters(), derived ones (1 - beta, ...) formed in float64 --
    Entry("sgd_update", "update", "sgd_update(p, g, lr)", "p -= lr g", "p"),
    Entry("momentum_update", "update", "momentum_update(p, g, v, lr, momentum)",
          "v = momentum v - lr g; p += v", "p, v"),
    Entry("nesterov_update", "update", "nesterov_update(p, g, v, lr, momentum, momentum_sq, lr_ahead)",
          "p += momentum_sq v; p -= lr_ahead g; v = momentum v - lr g  (the book's order: p moves with "
          "the previous v; momentum_sq = momentum^2, lr_ahead = (1 + momentum) lr)", "p, v"),
    Entry("adagrad_update", "update", "adagrad_update(p, g, h, lr, eps)",
          "h += g^2; p -= lr g / (sqrt(h) + eps)", "p, h"),
    Entry("rmsprop_update", "update", "rmsprop_update(p, g, h, lr, decay, one_minus_decay, eps)",
          "h = decay h + one_minus_decay g^2; p -= lr g / (sqrt(h) + eps)", "p, h"),
    Entry("adam_update", "update", "adam_update(p, g, m, v, lr_t, one_minus_beta1, one_minus_beta2, eps)",
          "m += one_minus_beta1 (g - m); v += one_minus_beta2 (g^2 - v); p -= lr_t m / (sqrt(v) + eps) "
          "(on a graph_replay backend lr_t may be a 0-d array of p's dtype, read when the update runs)",
          "p, m, v"),
    # -- in-place hooks of the fused step ------------------------------------------------------
    Entry("gather_rows_", "hook", "gather_rows_(out, src, idx)", "out[r] = src[idx[r]] (rows or elements; any dtype: uint8 codes too)",
          "out", FUSED_STEP),
    Entry("decode_bytes_", "hook", "decode_bytes_(out, codes, scale)",
          "out = codes / scale: uint8 codes to out's dtype, then one division (ByteImages' rows, "
          "in the composed InputLayer)", "out", FUSED_STEP),
    Entry("matmul_", "hook", "matmul_(out, a, b)", "out = a @ b (a, b may be transposed views)", "out", FUSED_STEP),
    Entry("add_bias_", "hook", "add_bias_(z, b)", "z += b", "z", FUSED_STEP),
    Entry("bias_relu_", "hook", "bias_relu_(z, b)", "z = max(z + b, 0)", "z", FUSED_STEP),
    Entry("bias_sigmoid_", "hook", "bias_sigmoid_(z, b)", "z = sigmoid(z + b)", "z", FUSED_STEP),
    Entry("colsum_", "hook", "colsum_(out, dy)", "out = dy.sum(0)", "out", FUSED_STEP),
    Entry("relu_grad_colsum_", "hook", "relu_grad_colsum_(dh, db, h)",
          "dh *= (h > 0); db = dh.sum(0)  (h: the ReLU's output)", "dh, db", FUSED_STEP),
    Entry("sigmoid_grad_colsum_", "hook", "sigmoid_grad_colsum_(dh, db, y)",
          "dh *= y (1 - y); db = dh.sum(0)  (y: the sigmoid's output)", "dh, db", FUSED_STEP),
    Entry("softmax_xent_", "hook", "softmax_xent_(dz, z, t) -> loss",
          "dz = (softmax(z) - onehot(t)) / N; returns the mean loss (on a GPU, a 0-d device array that "
          "the next call with the same batch size overwrites)",
          "dz", FUSED_STEP),
    # -- builders of the fused step ------------------------------------------------------------
    Entry("InputLayer", "builder", "InputLayer(bk, W, b, dW, x_train, batch_size, activation)",
          ".forward(idx, y): y = act(x_train[idx] @ W + b); .backward(dz): dW = x_train[idx].T @ dz",
          "y; dW", FUSED_STEP),
    Entry("OutputLayer", "builder", "OutputLayer(bk, W, b, dW, db, batch_size, activation)",
          ".forward_backward(dh, db_h, h, t) -> loss: z = h @ W + b, the loss, dz, dW, db, and "
          "dh = act'(dz @ W.T), db_h = dh.sum(0) for the hidden activation whose output is h "
          "(activation 'identity': dh = dz @ W.T itself, for blocks that end in Dropout or Batch Norm)",
          "dW, db, dh, db_h", FUSED_STEP),
    Entry("make_update", "builder", "make_update(bk, optimizer, params, grads) -> update()",
          "update() == optimizer.update(params, grads, bk)", "params, optimizer state", FUSED_STEP),
    # -- replaying captured work ---------------------------------------------------------------
    Entry("capture", "function", "capture(work) -> replay()",
          "records what work() launches without running it; each replay() runs that again, on the same "
          "arrays (cupy: a CUDA graph). work() may only write arrays that outlive the replays; what it "
          "cannot record (an allocation, a wait on the host) raises", "", GRAPH_REPLAY),
    # -- compiling ahead -----------------------------------------------------------------------
    Entry("compile_jobs", "function", "compile_jobs(run, cached=False) -> [(description, job)]",
          "the kernels run() would compile (cached=True: or load from a disk cache), with their argument "
          "types, learned without compiling (run() computes nothing meaningful meanwhile), longest first as far "
          "as the backend knows; job() compiles "
          "one where any process of this installation then finds it. Equal runs give equal descriptions "
          "in every process; [] when compiled code cannot be shared", "", COMPILE_AHEAD),
)

BY_NAME = {e.name: e for e in ENTRIES}
CAPABILITIES = frozenset(e.capability for e in ENTRIES) - {CORE}

# An activation is chosen once, as the pair of hooks that apply it and its gradient.
ACTIVATIONS = {
    "relu": ("bias_relu_", "relu_grad_colsum_"),
    "sigmoid": ("bias_sigmoid_", "sigmoid_grad_colsum_"),
    "identity": ("add_bias_", None),
}

# Integer codes the compiled kernels (numba loops, kernels/*.cu) use for an activation's
# gradient and for what the softmax kernel writes; the CUDA sources get them as #defines.
ACT_CODES = {"relu": 0, "sigmoid": 1, "identity": 2}
SOFTMAX_PROBS, SOFTMAX_GRAD = 0, 1
# The one block of the CUDA mean_of kernel: its launch (cupy) and its shared array read this one
# number (a launch with more threads would write past that array).
MEAN_THREADS = 256


# Dropout's counter-based generator, the same on every backend: each element's uniform number is
# a splitmix64 hash of the call's key and the element's flat index, so masks depend only on
# (seed, call, index), never on the device or a host round trip. u has 24 bits: exact in float32.
GOLDEN = 0x9E3779B97F4A7C15
MIX1, MIX2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB
MASK64 = (1 << 64) - 1


def mix64(z: int) -> int:
    """splitmix64's finaliser on a Python int (the kernels do the same in uint64)."""
    z = ((z ^ (z >> 30)) * MIX1) & MASK64
    z = ((z ^ (z >> 27)) * MIX2) & MASK64
    return z ^ (z >> 31)


def dropout_key(seed: int, call: int) -> int:
    """The key of one forward call of one Dropout layer."""
    return mix64((seed + GOLDEN * (call + 1)) & MASK64)


def dropout_uniform(key: int, i: int) -> float:
    """Element i's number in [0, 1): the top 24 bits of mix64(key + GOLDEN (i + 1)), over 2^24."""
    return (mix64((key + GOLDEN * (i + 1)) & MASK64) >> 40) / float(1 << 24)


def arg_specs(name: str) -> list[tuple[str, list[tuple[str, str]]]]:
    """``ARGS[name]`` as (argument, [(shape, kind), ...]) pairs; kind "f", "i", "m", "a", "#" or "#d"."""
    out = []
    for item in ARGS[name].split():
        arg, spec = item.split(":")
        forms = []
        for form in spec.split("|"):
            shape, _, kind = form.partition("~")
            forms.append((shape, "#" + kind if shape == "#" else kind or "f"))
        out.append((arg, forms))
    return out


def required(capabilities) -> list[Entry]:
    """The entries a backend declaring ``capabilities`` must provide."""
    return [e for e in ENTRIES if e.capability == CORE or e.capability in capabilities]


def missing(module) -> list[str]:
    """What ``module`` lacks of what its own ``CAPABILITIES`` declare (and of core)."""
    declared = getattr(module, "CAPABILITIES", None)
    if not isinstance(declared, frozenset):
        return ["CAPABILITIES (a frozenset)"]
    unknown = sorted(declared - CAPABILITIES)
    return [f"unknown capability {c!r}" for c in unknown] + [
        e.name for e in required(declared) if not hasattr(module, e.name)]


def names(kind: str) -> list[str]:
    return [e.name for e in ENTRIES if e.kind == kind]


def cuda_defines() -> str:
    """The codes above as C preprocessor definitions, prepended to the CUDA sources."""
    lines = [f"#define FASTDL_ACT_{k.upper()} {v}" for k, v in ACT_CODES.items()]
    lines += [f"#define FASTDL_SOFTMAX_PROBS {SOFTMAX_PROBS}", f"#define FASTDL_SOFTMAX_GRAD {SOFTMAX_GRAD}"]
    lines += [f"#define FASTDL_MEAN_THREADS {MEAN_THREADS}"]
    lines += [f"#define FASTDL_GOLDEN {GOLDEN:#x}ULL", f"#define FASTDL_MIX1 {MIX1:#x}ULL", f"#define FASTDL_MIX2 {MIX2:#x}ULL"]
    return "// generated from fastdl/backends/contract.py\n" + "\n".join(lines) + "\n"
