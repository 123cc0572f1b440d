"""Small helpers shared by the reliability tests."""

from __future__ import annotations

import time
from typing import Callable


def report(config, line: str) -> None:
    """Write a figure to the terminal even when pytest captures output (the counts the issue asks to print)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(line)
    else:  # pragma: no cover - only without the terminal plugin
        print(line)


def wait_for(check: Callable[[], bool], timeout_s: float, what: str, every_s: float = 1.0) -> float:
    """Poll ``check`` until it is true; returns the seconds waited, fails the test with ``what`` after timeout."""
    start = time.monotonic()
    while True:
        try:
            if check():
                return time.monotonic() - start
        except Exception:  # noqa: BLE001 - not ready yet (connection refused, replica starting, ...)
            pass
        if time.monotonic() - start > timeout_s:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(every_s)
