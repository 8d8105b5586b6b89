"""User mistakes: the one exception type (the CLI prints it as `error: …`, exit 2) and the
helpers that phrase such mistakes the same way everywhere."""

from __future__ import annotations

import difflib
import errno
import re
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


FULL_DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
FULL_DISK_TEXT = ("No space left on device", "Disk quota exceeded", "database or disk is full")


def out_of_space(exc: BaseException) -> str | None:
    """None unless a write failed for lack of space somewhere in exc's chain: an OSError with
    ENOSPC/EDQUOT, or an error whose text says so (sqlite via MLflow, a Ray trial's traceback).
    Then the path it failed on, or "" when none is named."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in FULL_DISK_ERRNOS:
            return str(exc.filename or "")
        text = str(exc)
        if any(t in text for t in FULL_DISK_TEXT):
            named = re.search(r"(?:No space left on device|Disk quota exceeded): '([^']+)'", text)
            return named.group(1) if named else ""
        exc = exc.__cause__ or exc.__context__
    return None


def full_disk_message(where: str, output: str | None) -> str:
    """The one line for a full disk: what failed and how to go on."""
    again = f"bench run --resume --output {output}" if output else "the same command again"
    return (f"no space left on the device{f' to write {where}' if where else ''}; results so far are kept. "
            f"Free some space, then run {again}")
