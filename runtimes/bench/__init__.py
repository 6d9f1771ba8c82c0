"""``attn-bench``: timing (``timing``), the engines-side-by-side table and plots (``reporting``), the GEMM
ceiling that achieved GFLOP/s is held against (``ceiling``, with its ``gemm_models``), accuracy on labelled
images (``accuracy``, ``labels``), and the load generators for a server (``remote``: closed loop,
``open_loop``: a schedule). ``cli`` is the command; it alone may call the exporter, lazily, to export a zoo
model that has no folder yet.
"""
