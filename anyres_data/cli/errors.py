"""How every CLI reports a user's mistake: one line on stderr, `error: ...`, and exit code 2.

Library code raises ValueError (or FileNotFoundError, or its own error types) with a message that
says what to fix; the commands turn those into this one line instead of a traceback. Exit code 1
is kept for "the run worked and found a problem in the data" (verify, an empty build).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError)


def fail(message: str, *, code: int = 2) -> NoReturn:
    """Print `error: message` on stderr and leave with `code`."""
    Console(stderr=True).print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@contextmanager
def user_errors(*more: type[BaseException]) -> Iterator[None]:
    """Inside the block, a ValueError, FileNotFoundError or one of `more` becomes `fail(str(error))`."""
    try:
        yield
    except (*USER_ERRORS, *more) as error:
        fail(str(error))
