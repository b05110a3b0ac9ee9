"""The cupy backend's ``capture`` (the contract's ``graph_replay``): work recorded into a CUDA
graph and replayed with one launch (``fastdl.replay`` says how the trainer uses it).

Built around the array module it is given (``capturer(cupy)``) rather than importing CuPy, so
the CPU emulator of the tests can hand it its own stand-in.
"""

from __future__ import annotations


def capturer(cp):
    """``capture(work) -> replay`` over the CuPy module ``cp``."""

    class PoolWatch(cp.cuda.MemoryHook):
        """Notes every request to CuPy's memory pool while a capture runs: memory handed out then
        goes back to the pool when its array dies, while the graph still writes to it at every
        replay."""
        name = "fastdl-capture-watch"

        def __init__(self):
            self.sizes = []

        def malloc_preprocess(self, **kwargs):
            self.sizes.append(kwargs.get("size"))

    def capture(work):
        """work() captured into a CUDA graph on a stream of its own (nothing runs); the replay
        launches the graph on the current stream, so it stays in order with the work around it.
        Work that takes memory from the pool is refused (see PoolWatch)."""
        stream, watch = cp.cuda.Stream(non_blocking=True), PoolWatch()
        with stream, watch:
            stream.begin_capture()
            try:
                work()
            except BaseException:
                try:                             # end the (now invalid) capture; report work's error
                    stream.end_capture()
                except Exception:                # noqa: BLE001
                    pass
                raise
            graph = stream.end_capture()
        if watch.sizes:
            raise RuntimeError(f"the captured work took {len(watch.sizes)} arrays from CuPy's memory pool "
                               f"({sum(s or 0 for s in watch.sizes)} bytes); a graph must write only arrays "
                               f"made before it")
        return lambda: graph.launch(stream=cp.cuda.get_current_stream())

    return capture
