"""Rejected rows in the user's bucket: Airbyte's ``object_storage_config`` (S3), a reject sink.

On the Airbyte platform, rows a destination rejects belong in the user's own bucket; the platform
links a sync's Timeline to ``s3://{bucket}/{bucket_path}/{sync_id}/`` when rows were rejected. Lines
are laid out by ``rejects/schema.bucket_line``, encoded by ``rejects/encoding.py`` and named by
``rejects/layout.py``.

Durability is part of the checkpoint contract: :meth:`S3RejectSink.flush`, which the destination
calls before it echoes the states that cover the rows, returns only when S3 confirmed every object
holding them; an upload that still fails after the retries raises a ``ConfigError`` or
``TransientError`` naming the bucket, and those states are never echoed.

Uploads never run under the pipeline's settle lock: ``add`` only buffers (a worker settling a row
holds that lock, and every other worker waits for it). Rows are buffered per stream; when the buffer
reaches ``max_buffer_bytes`` its parts are handed to one uploader thread (so a flood of rejections
between two states cannot exhaust memory), and :meth:`flush` hands over the rest and waits for them.
Once the buffers handed over hold more than ``QUEUED_BUFFERS`` times ``max_buffer_bytes`` (a second
full buffer while the first is still being uploaded), the threads that settle rows wait in
:meth:`wait_for_room`, after their settle and outside every lock, so memory stays bounded.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from destination_crowdtwist.api.retry import RetryPolicy
from destination_crowdtwist.config import S3Storage
from destination_crowdtwist.rejects.encoding import content_type, encode_part
from destination_crowdtwist.rejects.layout import object_key
from destination_crowdtwist.rejects.s3_calls import BucketCalls, Refused
from destination_crowdtwist.rejects.s3_client import S3Client
from destination_crowdtwist.rejects.s3_failures import wrong_region
from destination_crowdtwist.rejects.schema import BucketLine, bucket_line
from destination_crowdtwist.writers.base import Outcome, Row, StreamContext

logger = logging.getLogger("airbyte")

#: Upload early when this many bytes of rejected rows wait for the next checkpoint (durable sooner
#: is never wrong), so a flood of rejections between two states cannot exhaust memory.
DEFAULT_MAX_BUFFER_BYTES = 8 * 1024 * 1024
#: How many full buffers may wait for (or be in) the uploader before the threads that settle rows wait.
QUEUED_BUFFERS = 2


@dataclass
class _Pending:
    stream: StreamContext
    lines: list[BucketLine] = field(default_factory=list)
    size: int = 0


@dataclass(frozen=True)
class _Part:
    """One object to upload: its key (its part number taken when it was sealed) and its lines."""

    key: str
    lines: list[BucketLine]
    size: int
    number: int  # in sealing order, 1, 2, ... for the whole sink


class S3RejectSink:
    """A :class:`~destination_crowdtwist.rejects.sink.RejectSink` that uploads to the user's bucket.

    Rows are buffered per stream; each hand-over uploads one object (part) per stream with new rows,
    numbered 1, 2, ... per stream. Failures are retried with the connector's backoff
    (``rejects/s3_calls.py``); a permanent failure, or one that outlasts the retries, is raised by
    every later ``add`` and ``flush``. Rows are kept until uploaded. Thread-safe.
    """

    def __init__(
        self,
        storage: S3Storage,
        *,
        policy: RetryPolicy,
        client: S3Client | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        rand: Callable[[], float] = random.random,
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
        max_buffer_bytes: int = DEFAULT_MAX_BUFFER_BYTES,
    ) -> None:
        self.storage = storage
        self._client = client if client is not None else S3Client(storage)
        self._calls = BucketCalls(self._client, policy, sleep=sleep, rand=rand)
        self._new_id = new_id
        self._max_buffer_bytes = max_buffer_bytes
        # Path and file-name times are the sync's start, as in Airbyte's writer: one sync's objects
        # stay in one folder, and part numbers order them.
        self.started_at = datetime.fromtimestamp(clock(), UTC)
        self._cond = threading.Condition()
        self._pending: dict[tuple[str | None, str], _Pending] = {}
        self._buffered = 0
        self._parts: dict[tuple[str | None, str], int] = {}
        self._queue: deque[_Part] = deque()  # sealed parts; the first is being uploaded
        self._queued = 0  # bytes in the queue
        self._sealed = 0  # parts sealed so far (their numbers)
        self._stored = 0  # parts uploaded so far (in sealing order)
        self._uploader: threading.Thread | None = None
        self._closing = False
        self._error: BaseException | None = None  # the failure raised already, raised again on any later use
        self.uploaded: list[tuple[str, int]] = []  # (key, rows) of every confirmed object

    @property
    def name(self) -> str:
        """Where rows go, for the end-of-sync summary."""
        return self.storage.location

    def start(self) -> None:
        """Fail before the first row when the bucket is missing or in another region.

        A refused HeadBucket (HTTP 403) is not a failure: a policy may allow s3:PutObject only,
        and the first upload tells.
        """
        storage = self.storage

        def head() -> None:
            try:
                response = self._client.client.head_bucket(Bucket=storage.s3_bucket_name)
            except Exception as exc:
                if self._client.failure(exc).kind == "denied":
                    return
                raise
            failure = wrong_region(response, storage)
            if failure is not None:
                raise Refused(failure)

        try:
            self._calls.run(head, "Rejected rows cannot be stored", then="The sync stops before its first row.")
        except BaseException as exc:
            with self._cond:
                self._error = exc
            raise

    def add(self, row: Row, outcome: Outcome) -> None:
        """Buffer one rejected row; hand the buffer to the uploader when it is full. Never waits."""
        line = bucket_line(row, outcome, new_id=self._new_id)
        size = len(json.dumps(line, ensure_ascii=False, default=str)) + 1
        with self._cond:
            self._raise_if_failed()
            pending = self._pending.setdefault(row.stream.key, _Pending(row.stream))
            pending.lines.append(line)
            pending.size += size
            self._buffered += size
            if self._buffered >= self._max_buffer_bytes:
                self._seal_locked()

    def add_change(self, row: Row, outcome: Outcome) -> None:
        """Dry-run rows are not kept: the bucket holds rejected rows only (and a dry run has no sink here)."""

    def wait_for_room(self) -> None:
        """Wait while the uploader is more than ``QUEUED_BUFFERS`` full buffers behind (never after a failure)."""
        limit = QUEUED_BUFFERS * self._max_buffer_bytes
        with self._cond:
            self._cond.wait_for(lambda: self._queued <= limit or self._error is not None or self._closing)

    def flush(self) -> None:
        """Upload every row added so far (one new object per stream with rows); raise if that is impossible.

        Once an upload failed, every later call raises that error again: no later checkpoint may be
        confirmed while earlier rows are stored nowhere. Rows added while this waits are left for
        the next flush.
        """
        with self._cond:
            self._raise_if_failed()
            self._seal_locked()
            target = self._sealed
            self._cond.wait_for(lambda: self._stored >= target or self._error is not None)
            self._raise_if_failed()

    def close(self) -> None:
        """Upload what is left (rows after the last state). After a failure that was raised, let go."""
        try:
            with self._cond:
                failed = self._error is not None
            if not failed:
                self.flush()
        finally:
            with self._cond:
                self._closing = True
                self._pending.clear()
                self._cond.notify_all()
                uploader = self._uploader
            if uploader is not None:
                uploader.join()
            self._client.close()

    # -- the uploader --------------------------------------------------------------------------------------

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def _seal_locked(self) -> None:
        """Hand every stream's buffered rows to the uploader as one new part each. Caller holds the lock."""
        for key, pending in self._pending.items():
            number = self._parts.get(key, 0) + 1
            self._parts[key] = number
            self._sealed += 1
            name = object_key(self.storage, pending.stream, self.started_at, number)
            self._queue.append(_Part(name, pending.lines, pending.size, self._sealed))
            self._queued += pending.size
        self._pending.clear()
        self._buffered = 0
        if self._queue and self._uploader is None:
            self._uploader = threading.Thread(target=self._upload_parts, name="crowdtwist-s3-upload", daemon=True)
            self._uploader.start()
        self._cond.notify_all()

    def _upload_parts(self) -> None:
        """The uploader thread: parts in sealing order, one at a time, until closing or a failure."""
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._queue) or self._closing)
                if not self._queue:
                    return
                part = self._queue[0]
            try:
                self._upload(part)
            except BaseException as exc:  # noqa: BLE001 - raised on the sink's next use, by the thread using it
                with self._cond:
                    self._error = exc
                    self._queue.clear()
                    self._queued = 0
                    self._cond.notify_all()
                return
            with self._cond:
                self._queue.popleft()
                self._queued -= part.size
                self._stored = part.number
                self._cond.notify_all()

    def _upload(self, part: _Part) -> None:
        storage = self.storage
        body = encode_part(part.lines, storage)
        rows = len(part.lines)

        def put() -> None:
            self._client.client.put_object(
                Bucket=storage.s3_bucket_name, Key=part.key, Body=body, ContentType=content_type(storage)
            )

        self._calls.run(
            put, f"{rows} rejected rows could not be stored",
            then="The sync stops without confirming the checkpoints that cover them; rows already written to "
            "CrowdTwist stay written.",
        )
        self.uploaded.append((part.key, rows))
        logger.info(f"Stored {rows} rejected rows in s3://{storage.s3_bucket_name}/{part.key}")
