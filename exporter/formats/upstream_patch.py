"""One attribute of a third-party module or class replaced for the duration of a block, the original back after."""
from __future__ import annotations

import contextlib
from typing import Any, Iterator


@contextlib.contextmanager
def replaced_if_present(owner: Any, name: str, replacement: Any) -> Iterator[None]:
    """Within the block ``owner.name`` is ``replacement``; an ``owner`` without ``name`` (a release that no longer
    has what the work-around replaces) is left as it is."""
    original = getattr(owner, name, None)
    if original is None:
        yield
        return
    setattr(owner, name, replacement)
    try:
        yield
    finally:
        setattr(owner, name, original)
