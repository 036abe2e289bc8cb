"""One lock and one failure rule for the connector's local SQLite stores (member index, credit memory).

Every statement runs under the store's lock; any SQLite error becomes a ``ConfigError`` that says
what to fix, because a store that silently lost a write could skip or repeat a row.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from destination_crowdtwist.api.errors import ConfigError


@contextmanager
def sqlite_guard(lock: threading.Lock, failure: Callable[[sqlite3.Error], str]) -> Iterator[None]:
    """Hold ``lock``; turn a SQLite error into a ``ConfigError`` with the message ``failure`` builds."""
    with lock:
        try:
            yield
        except sqlite3.Error as exc:
            raise ConfigError(failure(exc)) from exc
