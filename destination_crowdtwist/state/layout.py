"""Where a program's sync state lives in the bucket (pure: names only, no I/O).

::

    <prefix>/crowdtwist-sync-state/<program hash>/member_index/<id_type>/base.ctss
    <prefix>/crowdtwist-sync-state/<program hash>/member_index/<id_type>/deltas/<ms>-<session>-<seq>.ctss
    <prefix>/crowdtwist-sync-state/<program hash>/ledger/base.ctss
    <prefix>/crowdtwist-sync-state/<program hash>/ledger/deltas/<ms>-<session>-<seq>.ctss

The program is the API base URL (as for the local files' scopes): two connections to one program
share its state, two programs never do. The hash (16 hex digits of SHA-256) keeps the URL out of
key names; every object's header names the program in full, so a collision or a copied object is
detected, never trusted (``state/codec.py``). Member index objects are per identifier type (an
entry keyed by an email says nothing of a username); the ledger's keys carry their identifier type
already, so a program has one ledger.

A *channel* is one such folder: one base, replaced only with ``If-Match`` on the ETag read, and
delta objects, each written once under a unique name (``If-None-Match: *``). Delta names sort by
upload time, so a listing reads in the order they were written.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

Kind = Literal["member_index", "ledger"]

ROOT_FOLDER = "crowdtwist-sync-state"
SUFFIX = ".ctss"
BASE_NAME = "base" + SUFFIX
DELTAS_FOLDER = "deltas/"


def program_hash(program: str) -> str:
    """16 hex digits of SHA-256 of the program (the API base URL): the folder of its state."""
    return hashlib.sha256(program.encode("utf-8")).hexdigest()[:16]


def program_root(prefix: str, program: str) -> str:
    """``<prefix>/crowdtwist-sync-state/<hash>/`` (no leading slash; ``prefix`` may be empty)."""
    head = prefix.strip("/")
    return f"{head + '/' if head else ''}{ROOT_FOLDER}/{program_hash(program)}/"


@dataclass(frozen=True)
class Channel:
    """One object set: the member index of one identifier type, or the program's ledger."""

    kind: Kind
    id_type: str | None
    folder: str  # ends with "/"

    @property
    def base_key(self) -> str:
        """The key of the base object."""
        return self.folder + BASE_NAME

    @property
    def deltas_prefix(self) -> str:
        """The prefix every delta key starts with."""
        return self.folder + DELTAS_FOLDER

    def delta_key(self, written_ms: int, session: str, seq: int) -> str:
        """A delta's key: upload time (ms, zero-padded so names sort by time), session, sequence."""
        return f"{self.deltas_prefix}{written_ms:013d}-{session}-{seq:06d}{SUFFIX}"

    def is_delta(self, key: str) -> bool:
        """Whether ``key`` names a delta object of this channel."""
        rest = key.removeprefix(self.deltas_prefix)
        return rest != key and "/" not in rest and rest.endswith(SUFFIX)

    @property
    def label(self) -> str:
        """How logs name the channel: ``member_index/email`` or ``ledger``."""
        return f"{self.kind}/{self.id_type}" if self.id_type else self.kind


def member_index_channel(root: str, id_type: str) -> Channel:
    """The member index objects of one identifier type."""
    return Channel("member_index", id_type, f"{root}member_index/{id_type}/")


def ledger_channel(root: str) -> Channel:
    """The program's ledger objects."""
    return Channel("ledger", None, f"{root}ledger/")


def member_index_folder(root: str) -> str:
    """The folder whose sub-folders are the identifier types with member index objects."""
    return f"{root}member_index/"
