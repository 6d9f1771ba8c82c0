"""torch.fx's node provenance shared instead of deep-copied while ExecuTorch lowers a program.

Every pass that rewrites a node under ``preserve_node_meta`` records where the new node came from in
``node.meta["from_node"]``: a ``NodeSource`` whose ``from_node`` is a *deep copy* of the old node's whole
chain. ExecuTorch's lowering runs dozens of such passes (three decompositions, the edge passes, ~20 XNNPACK
passes per partition), so each node's chain grows with every pass and each pass copies all of it. Profiled on
swinv2_tiny_window8_256 (one FP32 and two INT8 lowerings, 378 s), those copies were 45 s. The chains are
debugging metadata (ExecuTorch reads them only to map debug handles back to their source), and nothing
mutates a ``NodeSource`` after it is made, so a new node can share its ancestors' chain: on a 4-block swinv2
INT8 program the lowering took 51 s instead of 62 s, and the ``.pte`` computed the same outputs to the bit.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator


@contextlib.contextmanager
def shared_provenance() -> Iterator[None]:
    """Within the block, a new ``NodeSource`` keeps a shallow copy of its node's ``from_node`` list. A torch whose
    ``torch.fx.traceback`` has no ``NodeSource`` declaring a ``from_node`` attribute is left as it is."""
    from torch.fx import traceback as fx_traceback

    node_source = getattr(fx_traceback, "NodeSource", None)
    original = getattr(node_source, "__init__", None)
    if node_source is None or original is None or "from_node" not in getattr(node_source, "__annotations__", {}):
        yield
        return

    def init_sharing_the_chain(self: Any, node: Any, pass_name: str = "", action: Any = None) -> None:
        chain = node.meta.get("from_node") if node is not None else None
        if chain is None:
            original(self, node, pass_name, action)
            return
        node.meta["from_node"] = []  # the original copies this (now empty) list
        try:
            original(self, node, pass_name, action)
        finally:
            node.meta["from_node"] = chain
        self.from_node = list(chain)

    node_source.__init__ = init_sharing_the_chain
    try:
        yield
    finally:
        node_source.__init__ = original
