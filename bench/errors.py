"""User mistakes: the one exception type (the CLI prints it as `error: …`, exit 2) and the
helpers that phrase such mistakes the same way everywhere."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class BenchError(Exception):
    """A problem the user can fix. The message says what was wrong and what to do."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the closest choice, or '' when nothing is close."""
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_reachable(address: str, what: str, hint: str) -> None:
    """Fail in seconds, not minutes: Ray and MLflow both retry an absent peer for a long time."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    if parts.hostname is None or parts.port is None:
        return
    try:
        socket.create_connection((parts.hostname, parts.port), timeout=5).close()
    except OSError as e:
        raise BenchError(f"cannot reach {what} at {address}: {e.strerror or e}; {hint}") from None
