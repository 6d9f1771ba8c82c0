"""SIGTERM drains instead of dropping work: KServe's ModelServer, told to stop, stops accepting and answers
what it accepted.

On the first SIGTERM (or SIGINT) every model turns draining: ``/v2/health/ready`` is false at once and new
inference requests are refused (503 / UNAVAILABLE, ``ArtifactModel``), while those already accepted run to
their answers, with ``Connection: close`` on every REST answer so that clients drop their keep-alive
connections. When none is left in flight, or ``drain_timeout_s`` has passed, the server refuses for
``LINGER_S`` more, then the REST and gRPC servers stop and ``start`` returns (``unanswered`` says how many a
timeout cut off). A second signal during the drain stops at once: the process exits 130 without waiting
for engine calls in progress (``hard_exit``, in-process), or, on Ray, raises ``KeyboardInterrupt`` so that
Serve and the Ray processes it started are shut down first.

uvicorn takes SIGINT and SIGTERM for itself when it starts serving, so the handlers are installed once it
has started; before that, the CLI's own handler stops the process.
"""
from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from types import FrameType
from typing import Any

from kserve import ModelServer

from runtimes.cli_support import EXIT_INTERRUPTED

POLL_S = 0.02
STOP_GRACE_S = 2.0
LINGER_S = 0.5  # after the last accepted request is answered, refuse a little longer before closing


class DrainingModelServer(ModelServer):
    """``ModelServer`` whose SIGTERM drains its ``ArtifactModel``s before the servers stop."""

    def __init__(self, models: list[Any], drain_timeout_s: float, hard_exit: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.models, self.drain_timeout_s, self.hard_exit = models, drain_timeout_s, hard_exit
        self.unanswered = 0
        self._draining = False
        self._loop: asyncio.AbstractEventLoop | None = None

    def register_signal_handler(self) -> None:
        """Replaced by ``_take_signals`` once uvicorn serves (KServe's own handler stops without draining)."""

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop.create_task(self._take_signals())
        await super()._serve()

    async def _take_signals(self) -> None:
        while not (self._rest_server and self._rest_server._server.started):
            await asyncio.sleep(POLL_S)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._draining:  # a second signal: stop now
            if self.hard_exit:
                print("attn-serve: stopped during the drain (second signal)", file=sys.stderr, flush=True)
                os._exit(EXIT_INTERRUPTED)
            raise KeyboardInterrupt
        self._draining = True
        assert self._loop is not None
        self._loop.call_soon_threadsafe(lambda: self._loop.create_task(self.drain()))  # type: ignore[union-attr]

    async def drain(self) -> None:
        """Refuse new requests, wait for the accepted ones (at most ``drain_timeout_s``), then stop serving."""
        for model in self.models:
            model.draining = True
        in_flight = sum(m.in_flight for m in self.models)
        print(f"attn-serve: draining {in_flight} accepted requests (at most {self.drain_timeout_s:g} s); "
              f"new requests are refused", file=sys.stderr, flush=True)
        deadline = time.monotonic() + self.drain_timeout_s
        while in_flight and time.monotonic() < deadline:
            await asyncio.sleep(POLL_S)
            in_flight = sum(m.in_flight for m in self.models)
        self.unanswered = in_flight
        await asyncio.sleep(LINGER_S)  # refusals (Connection: close) retire the clients' keep-alive connections
        self._rest_server._server.should_exit = True  # uvicorn closes its sockets and returns from serve()
        if self._grpc_server:  # nothing accepted is left; the grace lets refusals in progress reach their clients
            await self._grpc_server._server.stop(grace=STOP_GRACE_S)
