"""The sync state as the connector uses it (``sync_state: {"storage": "bucket"}``): around one sync, and for ``check``.

:class:`BucketState` is the store of one ``write``: built from the config with the S3 client the
rejected rows' code builds (``rejects/s3_client.py``: the same keys, role, endpoint, TLS trust and
per-call deadline), opened before the writers start (the config it returns points
``member_index_path`` and ``ledger_path`` at the store's local files), flushed where a rule needs
it, closed after the writers closed their files. :func:`check_state` is what ``check`` runs.
docs/sync-state.md says why each call is where it is.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from destination_crowdtwist.api.errors import CrowdTwistError
from destination_crowdtwist.config import ConnectorConfig, S3Storage
from destination_crowdtwist.rejects.s3_client import S3Client
from destination_crowdtwist.rejects.s3_failures import failure_from_exception
from destination_crowdtwist.state.errors import SyncStateRefused, SyncStateUnreachable
from destination_crowdtwist.state.store import SyncStateStore

logger = logging.getLogger("airbyte")

#: Seconds a flush waits for an upload already running (its own upload is bounded by the client's deadline).
FLUSH_TIMEOUT = 60.0
#: The read timeout of the state's S3 calls: one PUT of a base carries about 47 MB per million members,
#: more than the rejected rows' uploads ever do.
READ_TIMEOUT = 300.0


def _storage(cfg: ConnectorConfig) -> S3Storage:
    storage = cfg.object_storage_config
    if storage is None:  # pragma: no cover - parse_config refuses it (config/checks.py, state_bucket)
        raise SyncStateRefused("sync_state.storage is bucket, but object_storage_config is not an S3 bucket")
    return storage


class BucketState:
    """The sync state of one ``write`` in the bucket of ``object_storage_config``.

    ``clock``: the writers' clock (the store dates its uploads by it). The local files live in a
    temporary folder of this sync's own, removed by :meth:`close`.
    """

    def __init__(self, cfg: ConnectorConfig, *, clock: Callable[[], float] = time.time) -> None:
        self._cfg = cfg
        self._clock = clock
        self._client: S3Client | None = None
        self._workdir: Path | None = None
        self._store: SyncStateStore | None = None

    def open(self) -> ConnectorConfig:
        """Read the program's state; the config the writers must use (their files are the store's).

        Raises:
            SyncStateRefused: the bucket refused (fix the setting).
            SyncStateUnreachable: the bucket could not be reached (try again later).
        """
        storage = _storage(self._cfg)
        self._workdir = Path(tempfile.mkdtemp(prefix="crowdtwist-sync-state-"))
        try:
            self._client = S3Client(storage, read_timeout=READ_TIMEOUT)
            self._store = SyncStateStore(
                self._client.client, storage.s3_bucket_name, self._cfg.api_base_url, self._workdir,
                prefix=storage.bucket_path, clock=self._clock,
            )
            self._store.open()
        except CrowdTwistError:
            self.close()
            raise
        except Exception as exc:
            # Making the client (or assuming the role) failed: said as the rejected rows' bucket says it.
            self.close()
            raise _client_error(exc, storage) from exc
        except BaseException:
            self.close()
            raise
        return dataclasses.replace(
            self._cfg, member_index_path=self._store.member_index_path, ledger_path=self._store.ledger_path
        )

    def flush(self) -> bool:
        """True once every change recorded so far is in the bucket (``SyncStateStore.flush``).

        The state gate's flush: no state is echoed meanwhile, so it does not wait for other flushes to
        join its upload (it shares one that is being gathered or runs).
        """
        return self._store is not None and self._store.flush(FLUSH_TIMEOUT, gather=False)

    def after_drop(self) -> None:
        """The member index cleared or forgot a member: make it durable in the bucket before the request.

        The workers' drops at about the same time share one upload (group commit, ``state/uploads.py``).
        A False flush (the bucket failing) is not a reason to stop: the store has warned, and what the
        bucket then keeps is the limit docs/sync-state.md describes (Failures).
        """
        if self._store is not None:
            self._store.flush(FLUSH_TIMEOUT)

    def close(self) -> None:
        """Upload the rest and compact what is due (after the writers closed their files); remove the files."""
        try:
            # INFO: a failed upload has had its one WARN from the store already.
            if self._store is not None and not self._store.close(FLUSH_TIMEOUT * 2):
                logger.info(
                    f"Sync state: the last changes of this sync could not be saved to {self._store.where}; the "
                    "next sync sends or verifies again the rows they covered (more requests, never a wrong skip)."
                )
        finally:
            self._store = None
            if self._client is not None:
                self._client.close()
                self._client = None
            if self._workdir is not None:
                shutil.rmtree(self._workdir, ignore_errors=True)
                self._workdir = None


def check_state(cfg: ConnectorConfig) -> str | None:
    """``check`` with ``sync_state: bucket``: the state's prefix can be listed, written and deleted; None,
    or what is wrong (naming the bucket). Reads no state; no retries, a person is waiting.
    """
    storage = _storage(cfg)
    workdir = Path(tempfile.mkdtemp(prefix="crowdtwist-sync-state-check-"))
    client: S3Client | None = None
    try:
        client = S3Client(storage, connect_timeout=5.0, read_timeout=20.0)
        SyncStateStore(client.client, storage.s3_bucket_name, cfg.api_base_url, workdir,
                       prefix=storage.bucket_path).check()
    except (SyncStateRefused, SyncStateUnreachable) as exc:
        return f"sync_state: {exc.message}"
    except Exception as exc:  # noqa: BLE001 - classified by failure_from_exception, which re-raises the unknown
        return f"sync_state: {_client_error(exc, storage).message}"
    finally:
        if client is not None:
            client.close()
        shutil.rmtree(workdir, ignore_errors=True)
    return None


def _client_error(exc: BaseException, storage: S3Storage) -> SyncStateRefused | SyncStateUnreachable:
    failure = failure_from_exception(exc, storage)
    text = f"The sync state in {storage.location} cannot be used: {failure.message}"
    return SyncStateRefused(text) if failure.permanent else SyncStateUnreachable(text)
