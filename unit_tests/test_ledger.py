"""The credit ledger: pending / done / forget, scopes, persistence, thread safety, unusable paths."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from destination_crowdtwist.api.errors import ConfigError
from destination_crowdtwist.writers.ledger import DONE, PENDING, CreditLedger


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "ledger.sqlite")


def test_lifecycle_pending_then_done(path: str) -> None:
    ledger = CreditLedger(path, scope="prog", clock=lambda: 5.0)
    assert ledger.status("k") is None
    assert ledger.size() == 0
    ledger.mark_pending("k")
    assert ledger.status("k") == PENDING
    assert ledger.outcome("k") is None
    ledger.mark_done("k", "credited")
    assert ledger.status("k") == DONE
    assert ledger.outcome("k") == "credited"
    assert ledger.size() == 1
    ledger.close()


def test_done_is_never_downgraded_to_pending(path: str) -> None:
    ledger = CreditLedger(path)
    ledger.mark_done("k", "not_awarded")
    ledger.mark_pending("k")
    assert ledger.status("k") == DONE
    assert ledger.outcome("k") == "not_awarded"
    ledger.close()


def test_forget_drops_only_pending_keys(path: str) -> None:
    ledger = CreditLedger(path)
    ledger.mark_pending("refused")
    ledger.mark_done("landed", "credited")
    ledger.forget("refused")
    ledger.forget("landed")
    ledger.forget("never-seen")
    assert ledger.status("refused") is None
    assert ledger.status("landed") == DONE
    assert ledger.size() == 1
    ledger.close()


def test_mark_done_without_pending_first(path: str) -> None:
    ledger = CreditLedger(path)
    ledger.mark_done("k", "duplicate")
    assert (ledger.status("k"), ledger.outcome("k")) == (DONE, "duplicate")
    ledger.close()


def test_keys_survive_reopening(path: str) -> None:
    ledger = CreditLedger(path, scope="p")
    ledger.mark_pending("sent-then-crashed")
    ledger.mark_done("ok", "credited")
    ledger.close()  # a crash loses nothing either: writes are autocommitted
    again = CreditLedger(path, scope="p")
    assert again.status("sent-then-crashed") == PENDING
    assert again.status("ok") == DONE
    assert again.size() == 2
    again.close()


def test_scopes_are_isolated(path: str) -> None:
    sandbox = CreditLedger(path, scope="http://127.0.0.1:9000")
    sandbox.mark_done("evt-1", "credited")
    production = CreditLedger(path, scope="https://api123.crowdtwist.com")
    assert production.status("evt-1") is None
    assert production.size() == 0
    production.mark_pending("evt-1")
    assert sandbox.status("evt-1") == DONE
    assert production.status("evt-1") == PENDING
    sandbox.close()
    production.close()


def test_concurrent_marks_from_many_threads(path: str) -> None:
    ledger = CreditLedger(path)

    def work(n: int) -> None:
        for i in range(50):
            key = f"{n}-{i}"
            ledger.mark_pending(key)
            ledger.mark_done(key, "credited")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert ledger.size() == 400
    assert {ledger.status(f"{n}-49") for n in range(8)} == {DONE}
    ledger.close()


def test_unwritable_path_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ledger_path"):
        CreditLedger(str(tmp_path / "missing-dir" / "ledger.sqlite"))


def test_a_file_that_is_not_sqlite_is_a_config_error(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.txt"
    bogus.write_text("this is not a database, just some text that is long enough " * 20)
    with pytest.raises(ConfigError, match="ledger_path"):
        CreditLedger(str(bogus))


def test_a_foreign_credits_table_is_a_config_error(path: str) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE credits (dedupe_key TEXT PRIMARY KEY, status TEXT)")
    db.commit()
    db.close()
    with pytest.raises(ConfigError, match="another layout"):
        CreditLedger(path)
