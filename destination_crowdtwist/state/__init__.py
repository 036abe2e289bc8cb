"""The sync state in the user's bucket: the member index and the credit ledger kept between syncs.

On the Airbyte platform every sync runs in a fresh container. ``SyncStateStore`` reads a program's
member index and ledger from the bucket into the local SQLite files the writers use, uploads what
they change as the sync goes, and compacts now and then, so re-syncs skip unchanged rows and
history reads there too. docs/sync-state.md says where the state lives, what it costs and protects,
and how to reset it.

Modules, top down: ``connector`` (the store of one sync, built from the config, and ``check``),
``store`` (the store), ``snapshot`` (consistent reads, compaction), ``local``
(the SQLite files and their journal), ``bucket`` (the S3 calls), ``codec`` (the objects' bytes),
``merge`` (the rules that make concurrent syncs safe), ``layout`` (object names), ``errors``.
"""

from __future__ import annotations

from destination_crowdtwist.state.errors import SyncStateRefused, SyncStateUnreachable
from destination_crowdtwist.state.store import SyncStateStore

__all__ = ["SyncStateRefused", "SyncStateStore", "SyncStateUnreachable"]
