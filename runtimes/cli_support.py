"""What attn-export, attn-bench and attn-serve share on the command line: click types that check ranges
before any work, and the one way a CLI turns errors into a line on stderr and an exit code."""
from __future__ import annotations

import math
import sys
from contextlib import contextmanager
from typing import Any, Iterator

import click

from runtimes.errors import AttnExportError

DEFAULT_OUT = "artifacts"  # where attn-export writes MODEL/ and attn-bench looks for it
EXIT_BAD_INPUT = 2  # bad input or environment (a folder not writable, a full disk)
EXIT_INTERRUPTED = 130  # Ctrl-C or SIGTERM


class FiniteFloatRange(click.FloatRange):
    """A FloatRange that also refuses NaN and infinities (NaN passes every ``<`` comparison)."""

    name = "finite float range"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


def fail(prog: str, message: str, exit_code: int) -> None:
    """Print ``PROG: error: MESSAGE`` on stderr and exit with ``exit_code``."""
    click.echo(f"{prog}: error: {message}", err=True)
    sys.exit(exit_code)


@contextmanager
def exit_on_errors(prog: str, *, output: str = "output", write_hint: str = "", interrupted: str = "interrupted",
                   traceback: bool = False) -> Iterator[None]:
    """Run a CLI's body. An ``AttnExportError`` exits with its own code in one line; an ``OSError`` (disk
    full, permissions: the environment) exits 2 naming the file (``output`` when it has none) and
    ``write_hint``; Ctrl-C exits 130 printing ``interrupted``. ``traceback`` (``-v``) re-raises the first two."""
    try:
        yield
    except AttnExportError as exc:
        if traceback:
            raise
        fail(prog, str(exc), exc.exit_code)
    except OSError as exc:
        if traceback:
            raise
        fail(prog, f"cannot write {exc.filename or output}: {exc.strerror or exc}{write_hint}", EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        click.echo(f"{prog}: {interrupted}", err=True)
        sys.exit(EXIT_INTERRUPTED)
