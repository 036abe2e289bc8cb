"""What can go wrong with the sync state in the bucket, as the errors ``check`` and ``write`` show.

Only the start of a sync raises: a bucket that cannot be read then means the user's setting does not
work, and a sync that silently ran without its state would spend every request again. During a sync
nothing raises: the store goes on without uploading (a lost upload costs requests, never a wrong
skip) and says so in one warning (``state/store.py``).

**One table.** Whether an S3 failure is permanent (fix the setting) or transient (try again later),
and what kind it is, is decided by the rejected rows' table, ``rejects/s3_failures.py``
(:func:`~destination_crowdtwist.rejects.s3_failures.failure_from_exception`): the same bucket's
answers mean the same thing to both. This module only words them for the state (which needs
``s3:GetObject`` and ``s3:ListBucket`` too) and keeps the state's own rule: a missing object
(``NoSuchKey``, a bare 404) is no failure here, and never "no such bucket" as the table reads a
bare 404. Exceptions that are not botocore's (a local disk error) are not the bucket's answer.
botocore is imported only once a failure came from it.
"""

from __future__ import annotations

from destination_crowdtwist.api.errors import ConfigError, TransientError
from destination_crowdtwist.config import S3Storage
from destination_crowdtwist.rejects.s3_failures import BAD_KEY_CODES, S3Failure, failure_from_exception

#: The table's verdict reads the storage only for its own wording, which the state does not use.
_ANY_BUCKET = S3Storage(s3_bucket_name="")
_BOTO_MODULES = ("botocore", "boto3", "urllib3")


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


def is_storage_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is a failure of the storage (botocore's and urllib3's errors, an answer with an
    error code, an ``OSError``), never a bug of ours.
    """
    return bool(error_code(exc)) or type(exc).__module__.startswith(_BOTO_MODULES) or isinstance(exc, OSError)


def verdict(exc: BaseException) -> S3Failure | None:
    """The S3 failure table's verdict on ``exc``; None for a missing object or an exception that is
    not an answer or a connection failure of the bucket (not botocore's).
    """
    if is_missing(exc) or not type(exc).__module__.startswith(_BOTO_MODULES):
        return None
    try:
        return failure_from_exception(exc, _ANY_BUCKET)
    except Exception:  # noqa: BLE001 - the table re-raises what it does not know: not the bucket's answer
        return None


def describe(exc: BaseException) -> str:
    """A short, secret-free account of an S3 failure (botocore's own text may quote parameters)."""
    failure, code = verdict(exc), error_code(exc)
    kind = failure.kind if failure is not None else ""
    if kind == "denied" and code not in BAD_KEY_CODES:
        return "access denied (the keys' policy must allow s3:GetObject, s3:PutObject, s3:DeleteObject, s3:ListBucket)"
    if kind in ("denied", "credentials"):
        return f"the access keys were not accepted ({code})" if code else "no AWS credentials were found"
    if kind == "missing":
        return "no such bucket"
    if kind == "region":
        return f"the bucket is in another region than s3_bucket_region ({code or 'its answer says so'})"
    if kind == "tls":
        return "the TLS handshake failed (the endpoint's certificate could not be verified; see s3_ca_certificate)"
    if kind == "unreachable":
        return f"the endpoint could not be reached ({type(exc).__name__})"
    if code:
        return f"S3 answered {code}"
    return f"{type(exc).__name__} (not an answer of the bucket)"


def start_error(exc: BaseException, where: str) -> ConfigError | TransientError:
    """The error a failed start raises: refused (fix the setting) or unreachable (try again later),
    as the S3 failure table decides (its retryable failures are the unreachable ones).
    """
    failure = verdict(exc)
    what = describe(exc)
    if failure is not None and not failure.permanent:
        return SyncStateUnreachable(
            f"The sync state in {where} cannot be read: {what}. Check the endpoint and the network; "
            "the sync did not start, so nothing was sent."
        )
    return SyncStateRefused(
        f"The sync state in {where} cannot be read: {what}. Fix the bucket settings or the keys' policy, "
        "or turn sync_state off (every row is then sent as if the connector had never seen it)."
    )
