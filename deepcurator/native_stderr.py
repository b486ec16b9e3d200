"""Native libraries' messages on standard error, sorted from the lines an operator needs.

libmpg123 (inside libsndfile, the mp3 decoder) writes a ``Note: ...``, ``Warning: ...`` or
``[src/libmpg123/...] error: ...`` line straight to file descriptor 2 for every damaged frame
it resyncs over: thousands of lines for a few damaged uploads, drowning the server's own log.
libsndfile offers no way to silence it (it never sets mpg123's ``MPG123_QUIET``).

:func:`install` puts a pipe on descriptor 2 and a thread that passes every line on to the
original standard error, except the decoder's, which go to the ``deepcurator.mpg123`` logger
at DEBUG and are counted (:func:`suppressed`). Python's own ``sys.stderr`` is pointed at the
original descriptor, so tracebacks and logging never wait on the thread. Idempotent; a no-op
where descriptors cannot be redirected.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading

logger = logging.getLogger("deepcurator.mpg123")

NOISE = re.compile(rb"^(Note: |Warning: |\[src/libmpg123/)")

_lock = threading.Lock()
_installed = False
_suppressed = 0


def is_decoder_noise(line: bytes) -> bool:
    """Whether ``line`` (bytes, without its newline) is one of libmpg123's messages."""
    return NOISE.match(line) is not None


def suppressed() -> int:
    """How many decoder lines this process has kept off standard error."""
    return _suppressed


def install() -> bool:
    """Filter native writes to descriptor 2 (see the module's docstring); True once in place."""
    global _installed
    with _lock:
        if _installed:
            return True
        try:
            original = os.dup(2)
            read_end, write_end = os.pipe()
            os.dup2(write_end, 2)
            os.close(write_end)
        except OSError:  # pragma: no cover - no descriptors to redirect
            return False
        try:
            sys.stderr.flush()
        except (AttributeError, ValueError):  # pragma: no cover - no usable sys.stderr
            pass
        # Python's writes bypass the pipe: same descriptor as before, line buffered.
        sys.stderr = open(  # noqa: SIM115 - it becomes sys.stderr, open for the life of the process
            original, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False)
        threading.Thread(target=_pump, args=(read_end, original), name="native-stderr", daemon=True).start()
        _installed = True
        return True


def _pump(read_end: int, original: int) -> None:
    """Copy lines from the pipe to ``original``, keeping the decoder's back."""
    global _suppressed
    pending = b""
    while True:
        try:
            data = os.read(read_end, 1 << 16)
        except OSError:  # pragma: no cover
            return
        if not data:
            return
        pending += data
        *lines, pending = pending.split(b"\n")
        out = []
        for line in lines:
            if is_decoder_noise(line):
                _suppressed += 1
                logger.debug("%s", line.decode(errors="replace"))
            else:
                out.append(line + b"\n")
        if len(pending) > 1 << 16:  # a very long line without a newline: pass it on as it is
            out.append(pending)
            pending = b""
        if out:
            try:
                os.write(original, b"".join(out))
            except OSError:  # pragma: no cover - standard error closed: drop, never block
                pass
