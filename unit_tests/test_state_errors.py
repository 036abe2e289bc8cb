"""How the sync state names a bucket's failures (read from the exception's shape, no botocore needed)."""

from __future__ import annotations

import pytest

from destination_crowdtwist.state.errors import (
    SyncStateRefused,
    SyncStateUnreachable,
    describe,
    is_missing,
    is_precondition_failed,
    start_error,
)


class ClientError(Exception):
    def __init__(self, code: str, status: int = 400) -> None:
        super().__init__(f"An error occurred ({code}) with a secret parameter in botocore's text")
        self.response = {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}


class EndpointConnectionError(Exception):
    pass


@pytest.mark.parametrize(("exc", "kind", "says"), [
    (ClientError("AccessDenied", 403), SyncStateRefused, "access denied"),
    (ClientError("InvalidAccessKeyId", 403), SyncStateRefused, "keys were not accepted"),
    (ClientError("NoSuchBucket", 404), SyncStateRefused, "no such bucket"),
    (ClientError("SlowDown", 503), SyncStateUnreachable, "S3 answered SlowDown"),
    (EndpointConnectionError("http://10.0.0.1"), SyncStateUnreachable, "could not be reached"),
    (OSError("disk full"), SyncStateRefused, "OSError"),
])
def test_a_failed_start_is_refused_or_unreachable_and_says_why(exc: Exception, kind: type, says: str) -> None:
    error = start_error(exc, "s3://b/p/")
    assert isinstance(error, kind)
    assert says in error.message and "s3://b/p/" in error.message
    assert "secret parameter" not in error.message  # botocore's own text is never quoted


def test_conditions_and_missing_objects_are_told_apart() -> None:
    assert is_precondition_failed(ClientError("PreconditionFailed", 412))
    assert is_precondition_failed(ClientError("ConditionalRequestConflict", 409))
    assert not is_precondition_failed(ClientError("AccessDenied", 403))
    assert is_missing(ClientError("NoSuchKey", 404)) and not is_missing(ClientError("NoSuchBucket", 404))
    assert describe(ValueError("x")) == "ValueError (not an answer of the bucket)"
