"""Rejected rows reach the bucket outside the pipeline's settle lock (rejects/s3_sink.py): a stalled
upload holds up no other row's settle, a flush holds no lock of the report's, a state still waits for
its rows to be durable, and the memory the sink buffers stays bounded.

The bucket is a double whose put_object blocks until the test releases it; the real S3 calls are
tested against moto in integration_tests/test_object_storage_s3.py.
"""

from __future__ import annotations

import json
import threading
from typing import Any, cast

import pytest

from destination_crowdtwist.api.errors import ConfigError
from destination_crowdtwist.api.retry import RetryPolicy
from destination_crowdtwist.config import S3Storage
from destination_crowdtwist.records.rejection import Reason, Rejection
from destination_crowdtwist.rejects.s3_client import S3Client
from destination_crowdtwist.rejects.s3_failures import S3Failure, explain
from destination_crowdtwist.rejects.s3_sink import S3RejectSink
from destination_crowdtwist.rejects.schema import bucket_line
from destination_crowdtwist.sync.pipeline import Pipeline
from destination_crowdtwist.sync.report import SyncReport
from destination_crowdtwist.writers.base import Outcome, OutcomeKind, Prepared, Row, StreamContext

pytestmark = pytest.mark.timeout(30)

STREAM = StreamContext(None, "users", "append_dedup")
STORAGE = S3Storage("rejects")


class StalledBucket:
    """An ``S3Client`` double: ``put_object`` blocks until ``release`` is set (or fails when ``denied``)."""

    def __init__(self, *, denied: bool = False) -> None:
        self.storage = STORAGE
        self.client = self  # the boto3 calls are this object's methods
        self.entered = threading.Event()
        self.release = threading.Event()
        self.denied = denied
        self.keys: list[str] = []

    def put_object(self, **call: Any) -> dict[str, Any]:
        self.entered.set()
        if self.denied:
            raise PermissionError("denied")
        assert self.release.wait(20), "the test never released the upload"
        self.keys.append(call["Key"])
        return {}

    def failure(self, exc: BaseException) -> S3Failure:
        return explain(STORAGE, code="AccessDenied", status=403)

    def close(self) -> None: ...


def sink_on(bucket: StalledBucket, max_buffer_bytes: int) -> S3RejectSink:
    return S3RejectSink(STORAGE, policy=RetryPolicy(max_retries=0), client=cast(S3Client, bucket),
                        new_id=lambda: "id", max_buffer_bytes=max_buffer_bytes)


def data(user: str, note: str = "", *, bad: bool = True) -> dict[str, Any]:
    return {"user_id": user, "note": note, "bad": bad}


def rejected(user: str) -> Outcome:
    return Outcome.rejected(user, Rejection(Reason.VALIDATION, "bad row"))


def line_size(values: dict[str, Any]) -> int:
    """The bytes the sink counts for a row (its bucket line, as JSON, with the newline)."""
    line = bucket_line(Row(stream=STREAM, data=values, seq=0), rejected(values["user_id"]), new_id=lambda: "id")
    return len(json.dumps(line, ensure_ascii=False, default=str)) + 1


class Writer:
    """Rejects the rows marked bad, updates the others; no request."""


    def prepare(self, row: Row) -> Prepared[None]:
        return Prepared(row, row.data["user_id"], row.data["user_id"], None)

    def settle_at_once(self, prepared: Prepared[None]) -> Outcome | None:
        return None

    def apply(self, prepared: Prepared[None]) -> Outcome:
        if prepared.row.data["bad"]:
            return rejected(prepared.member)
        return Outcome(OutcomeKind.UPDATED, member=prepared.member)

    def start(self) -> None: ...

    def checkpoint(self) -> None: ...

    def finish(self) -> None: ...

    def close(self) -> None: ...


def test_a_stalled_upload_holds_up_no_settle_and_the_state_waits_for_its_rows() -> None:
    small = line_size(data("u"))
    cap = 2 * small + 10  # one small row does not fill the buffer
    big = data("a", "x" * (cap + 10 - line_size(data("a"))))  # this one does: its upload starts at once
    assert line_size(big) == cap + 10
    bucket = StalledBucket()
    sink = sink_on(bucket, cap)
    report = SyncReport(sinks=[sink])
    writer = Writer()
    pipeline = Pipeline(report, concurrency=2, progress_interval=0)
    pipeline.start()
    try:
        pipeline.submit(Row(stream=STREAM, data=big, seq=0), writer)
        assert bucket.entered.wait(5)  # the upload of row 0 has started, and stalls
        # Before, row 0's upload ran under the settle lock: these rows could not settle until it ended.
        pipeline.submit(Row(stream=STREAM, data=data("b", bad=False), seq=1), writer)
        pipeline.submit(Row(stream=STREAM, data=data("c"), seq=2), writer)
        pipeline.add_state("s1", STREAM.key)
        assert pipeline.wait_settled(timeout=5)
        [state] = pipeline.release()
        assert (state.record_count, state.rejected_count) == (1, 2)

        # The state is echoed after report.flush(): that waits until rows 0 and 2 are stored.
        flushing = threading.Thread(target=report.flush)
        flushing.start()
        flushing.join(0.3)
        assert flushing.is_alive()
        # Meanwhile rows still settle: the flush holds neither the report's lock nor the pipeline's.
        pipeline.submit(Row(stream=STREAM, data=data("d"), seq=3), writer)
        assert pipeline.wait_settled(timeout=5)
        assert sink.uploaded == []

        bucket.release.set()
        flushing.join(5)
        assert not flushing.is_alive()
        assert [rows for _, rows in sink.uploaded] == [1, 1]  # row 0, then row 2 (row 3 is the next flush's)
    finally:
        bucket.release.set()
        pipeline.shutdown()
        report.close()
    assert [rows for _, rows in sink.uploaded] == [1, 1, 1]
    assert bucket.keys == [key for key, _ in sink.uploaded]


def test_threads_that_settle_rows_wait_only_when_the_uploader_is_two_buffers_behind() -> None:
    cap = line_size(data("a"))  # every row fills the buffer: each is one part
    bucket = StalledBucket()
    sink = sink_on(bucket, cap)
    try:
        sink.add(Row(stream=STREAM, data=data("a"), seq=0), rejected("a"))
        assert bucket.entered.wait(5)
        sink.add(Row(stream=STREAM, data=data("b"), seq=1), rejected("b"))
        sink.wait_for_room()  # one part uploading, one waiting: no wait
        sink.add(Row(stream=STREAM, data=data("c"), seq=2), rejected("c"))  # add itself never waits
        waiting = threading.Thread(target=sink.wait_for_room)
        waiting.start()
        waiting.join(0.3)
        assert waiting.is_alive()  # three buffers held: the settling thread waits (outside every lock)
        bucket.release.set()
        waiting.join(5)
        assert not waiting.is_alive()
    finally:
        bucket.release.set()
        sink.close()
    assert [rows for _, rows in sink.uploaded] == [1, 1, 1]


def test_a_failed_upload_is_raised_by_the_next_add_and_flush_and_nobody_waits_for_room() -> None:
    bucket = StalledBucket(denied=True)
    sink = sink_on(bucket, 1)
    sink.add(Row(stream=STREAM, data=data("a"), seq=0), rejected("a"))
    with pytest.raises(ConfigError, match="Access to S3 bucket 'rejects' was denied") as first:
        sink.flush()
    sink.wait_for_room()  # returns at once
    with pytest.raises(ConfigError) as again:
        sink.add(Row(stream=STREAM, data=data("b"), seq=1), rejected("b"))
    assert again.value is first.value
    assert "1 rejected rows could not be stored" in first.value.message
    sink.close()  # lets go without raising again
    assert sink.uploaded == []
