"""A hang guard for tests of code that used to hang (a dripping server, a named pipe): run it in a thread."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


def finishes(fn: Callable[..., Any], *args: Any, within: float = 60.0, **kwargs: Any) -> Any:
    """fn's result or exception, from a thread; fails the test if fn is still running after `within` seconds.

    A hang guard, not a timing assertion: the bound is tens of times what the work is allowed to take.
    """
    outcome = {}

    def run():
        try:
            outcome["value"] = fn(*args, **kwargs)
        except BaseException as err:  # handed to the test
            outcome["error"] = err

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(within)
    assert not thread.is_alive(), f"still running after {within} s: it hangs"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
