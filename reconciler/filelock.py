"""An exclusive advisory lock on a file, waited for with a deadline.

Owns the flock retry loop that the state directory's cluster locks and the Git source's clone lock
share. It must not know what the lock protects; callers turn a timeout into their own message.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def exclusive(path: str, wait: float, poll: float = 0.05) -> Iterator[int]:
    """Holds an exclusive flock on `path` (created if missing); TimeoutError after `wait` seconds."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + wait
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() >= deadline:
                    raise TimeoutError(path) from None
                time.sleep(poll)
        yield fd
    finally:
        os.close(fd)
