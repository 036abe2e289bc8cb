"""What a SIGTERM means at each point of a command (issue 18 §3).

Before a command has answered, SIGTERM stops it: the handler raises ``Terminated`` in the main
thread (a sync then drains and echoes what is safe: cdk_adapter.py, sync/session.py). Once the answer is out
(the status line of ``check``, the SPEC of ``spec``, the catalog of ``discover``, or the end of a
sync's output), there is nothing left to lose: the process ends at once with status 0, as
PyAirbyte expects when it terminates a connector right after reading the status line. A SIGTERM
that arrives while the answer is being written waits until it is written (then exit 0).

Pure state and a handler; the process-level parts (``signal``, ``os._exit``) are injected by the
caller, so the decisions are testable without signals.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator


class Terminated(Exception):
    """Raised in the main thread by the SIGTERM handler, before the command has answered."""


def exit_now(code: int) -> None:
    """End the process with ``code`` after a best-effort flush of stdout and stderr (never blocks
    on a lock: it runs in a signal handler, and the answer was flushed when it was written).
    """
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


class Termination:
    """The SIGTERM state of this process: working, writing the answer, or answered.

    Args:
        exit_process: ends the process (``exit_now``; tests inject a recorder).
        restore_default: makes a second SIGTERM end the process at once (``signal.signal(SIGTERM,
            SIG_DFL)``), called when the first one stops the command.
    """

    def __init__(self, exit_process: Callable[[int], None] = exit_now,
                 restore_default: Callable[[], object] = lambda: None) -> None:
        self._exit = exit_process
        self.restore_default: Callable[[], object] = restore_default
        self.answered = False
        self._writing = False
        self._pending = False

    def on_sigterm(self, signum: int = 15, frame: object = None) -> None:
        """The SIGTERM handler (runs in the main thread, between two bytecodes)."""
        if self.answered:
            self._exit(0)
            return
        if self._writing:
            self._pending = True  # decided once the answer is written
            return
        self.restore_default()
        raise Terminated()

    @contextlib.contextmanager
    def answering(self) -> Iterator[None]:
        """Write the command's answer inside this block: a SIGTERM meanwhile waits for its end, and
        once it is written every SIGTERM exits 0.
        """
        self._writing = True
        written = False
        try:
            yield
            written = True
        finally:
            self._writing = False
            if written:
                self.answered = True
            if self._pending:
                self._pending = False
                if written:
                    self._exit(0)
                else:  # the answer did not go out: the SIGTERM stops the command as before it
                    self.restore_default()
                    raise Terminated()

    def finished(self) -> None:
        """The command's output is complete (a sync echoed its last state): SIGTERM now exits 0."""
        self.answered = True
