"""One lock and one failure rule for the connector's local SQLite stores (member index, credit memory),
and one way to open a sync's scratch database (credit memory, created members, deferred rows).

Every statement runs under the store's lock; any SQLite error becomes a ``ConfigError`` that says
what to fix, because a store that silently lost a write could skip or repeat a row.
"""

from __future__ import annotations

import hashlib
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


def scratch_db(cache_kib: int, schema: tuple[str, ...]) -> sqlite3.Connection:
    """A private temporary database with ``schema``, a transaction left open for the whole sync.

    ``""`` is SQLite's private temporary database: in the page cache, spilled to a file deleted on
    close. Scratch data is never needed after this process: no journal, no syncing, and one transaction
    open for the sync (a commit per statement would cost a write to the temporary file each time).
    """
    db = sqlite3.connect("", check_same_thread=False, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=OFF")
        db.execute("PRAGMA synchronous=OFF")
        db.execute(f"PRAGMA cache_size=-{cache_kib}")
        for statement in schema:
            db.execute(statement)
        db.execute("BEGIN")
    except BaseException:
        db.close()
        raise
    return db


def key_digest(*parts: str) -> bytes:
    """16 bytes of SHA-256 over ``parts`` (a unit separator keeps ("ab", "c") and ("a", "bc") apart)."""
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).digest()[:16]
