"""How the sync state names a bucket's failures: classified by the one S3 failure table
(``rejects/s3_failures.py``), worded for the state, a missing object never a failure."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError as BotoClientError
from botocore.exceptions import EndpointConnectionError, ReadTimeoutError, SSLError

from destination_crowdtwist.state.errors import (
    SyncStateRefused,
    SyncStateUnreachable,
    describe,
    is_missing,
    is_precondition_failed,
    start_error,
    verdict,
)


def ClientError(code: str, status: int = 400) -> BotoClientError:
    error = BotoClientError({"Error": {"Code": code, "Message": "secret parameter"},
                             "ResponseMetadata": {"HTTPStatusCode": status}}, "GetObject")
    assert "secret parameter" in str(error)  # botocore's own text, which must never be quoted
    return error


@pytest.mark.parametrize(("exc", "kind", "says"), [
    (ClientError("AccessDenied", 403), SyncStateRefused, "access denied"),
    (ClientError("InvalidAccessKeyId", 403), SyncStateRefused, "keys were not accepted"),
    (ClientError("ExpiredToken", 400), SyncStateRefused, "keys were not accepted"),
    (ClientError("NoSuchBucket", 404), SyncStateRefused, "no such bucket"),
    (ClientError("SlowDown", 503), SyncStateUnreachable, "S3 answered SlowDown"),
    (ClientError("TooManyRequests", 429), SyncStateUnreachable, "S3 answered TooManyRequests"),
    (EndpointConnectionError(endpoint_url="http://10.0.0.1"), SyncStateUnreachable, "could not be reached"),
    (ReadTimeoutError(endpoint_url="http://10.0.0.1"), SyncStateUnreachable, "could not be reached"),
    # The table: a certificate that cannot be verified fails the same way on every retry.
    (SSLError(endpoint_url="https://s3.local", error="bad cert"), SyncStateRefused, "TLS handshake"),
    (OSError("disk full"), SyncStateRefused, "OSError (not an answer of the bucket)"),
])
def test_a_failed_start_is_refused_or_unreachable_and_says_why(exc: Exception, kind: type, says: str) -> None:
    error = start_error(exc, "s3://b/p/")
    assert isinstance(error, kind)
    assert says in error.message and "s3://b/p/" in error.message
    assert "secret parameter" not in error.message  # botocore's own text is never quoted


def test_the_state_reads_the_rejected_rows_table_but_a_missing_object_is_no_failure() -> None:
    denied = verdict(ClientError("AccessDenied", 403))
    assert denied is not None and denied.kind == "denied" and denied.permanent
    busy = verdict(ClientError("InternalError", 500))
    assert busy is not None and not busy.permanent
    # The table reads a bare 404 as "no such bucket" (HeadBucket's answer); to the state it is a missing object.
    assert verdict(ClientError("NoSuchKey", 404)) is None and verdict(ClientError("NotFound", 404)) is None
    assert verdict(ValueError("ours")) is None


def test_conditions_and_missing_objects_are_told_apart() -> None:
    assert is_precondition_failed(ClientError("PreconditionFailed", 412))
    assert is_precondition_failed(ClientError("ConditionalRequestConflict", 409))
    assert not is_precondition_failed(ClientError("AccessDenied", 403))
    assert is_missing(ClientError("NoSuchKey", 404)) and not is_missing(ClientError("NoSuchBucket", 404))
    assert describe(ValueError("x")) == "ValueError (not an answer of the bucket)"
