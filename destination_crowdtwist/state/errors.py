"""What can go wrong with the sync state in the bucket, as the errors ``check`` and ``write`` show.

Only the start of a sync raises: a bucket that cannot be read then means the user's setting does not
work, and a sync that silently ran without its state would spend every request again. During a sync
nothing raises: the store goes on without uploading (a lost upload costs requests, never a wrong
skip) and says so in one warning (``state/store.py``).

botocore is never imported here: the failure is read from the exception's shape (``response`` of a
``ClientError``, the class name of a connection error), so the pure layers load without it.
"""

from __future__ import annotations

from destination_crowdtwist.api.errors import ConfigError, TransientError
from destination_crowdtwist.rejects.s3_failures import BAD_KEY_CODES, BUSY_CODES, DENIED_CODES, EXPIRED_CODES

# The codes are rejects/s3_failures.py's table (one table for the same bucket's answers). A bare
# 404 is not "no such bucket" here: the state reads objects, and a missing object is no failure.
_DENIED = DENIED_CODES
_BAD_KEYS = BAD_KEY_CODES | EXPIRED_CODES
_NO_BUCKET = frozenset({"NoSuchBucket"})
#: With the HTTP status as the code when an answer has none (error_code).
_BUSY = BUSY_CODES | {"500", "503"}
#: botocore's connection failures, by class name (the classes live in botocore.exceptions).
_UNREACHABLE = frozenset({
    "EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "ConnectionClosedError",
    "ProxyConnectionError", "SSLError", "ConnectionError",
})


class SyncStateRefused(ConfigError):
    """At start, the bucket refused the sync state: access denied, unknown keys, no such bucket."""


class SyncStateUnreachable(TransientError):
    """At start, the bucket's endpoint could not be reached (after the client's own retries)."""


def error_code(exc: BaseException) -> str:
    """The S3 error code of a botocore ``ClientError`` (``""`` for any other exception)."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return ""
    error = response.get("Error")
    code = error.get("Code") if isinstance(error, dict) else None
    if code:
        return str(code)
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return str(status) if status else ""


def is_precondition_failed(exc: BaseException) -> bool:
    """Whether a conditional write lost (``If-Match`` / ``If-None-Match`` did not hold)."""
    return error_code(exc) in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409")


def is_missing(exc: BaseException) -> bool:
    """Whether the object (or, with ``If-Match``, the object to replace) does not exist."""
    return error_code(exc) in ("NoSuchKey", "404", "NotFound")


def describe(exc: BaseException) -> str:
    """A short, secret-free account of an S3 failure (botocore's own text may quote parameters)."""
    code = error_code(exc)
    if code in _DENIED:
        return "access denied (the keys' policy must allow s3:GetObject, s3:PutObject, s3:DeleteObject, s3:ListBucket)"
    if code in _BAD_KEYS:
        return f"the access keys were not accepted ({code})"
    if code in _NO_BUCKET:
        return "no such bucket"
    if code:
        return f"S3 answered {code}"
    if type(exc).__name__ in _UNREACHABLE:
        return f"the endpoint could not be reached ({type(exc).__name__})"
    return f"{type(exc).__name__} (not an answer of the bucket)"


def start_error(exc: BaseException, where: str) -> ConfigError | TransientError:
    """The error a failed start raises: refused (fix the setting) or unreachable (try again later)."""
    code = error_code(exc)
    unreachable = code in _BUSY or (not code and type(exc).__name__ in _UNREACHABLE)
    what = describe(exc)
    if unreachable:
        return SyncStateUnreachable(
            f"The sync state in {where} cannot be read: {what}. Check the endpoint and the network; "
            "the sync did not start, so nothing was sent."
        )
    return SyncStateRefused(
        f"The sync state in {where} cannot be read: {what}. Fix the bucket settings or the keys' policy, "
        "or turn sync_state off (every row is then sent as if the connector had never seen it)."
    )
