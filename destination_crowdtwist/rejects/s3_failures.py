"""What S3 answered, in words a user can act on: the S3 failure table.

:func:`explain` is pure (facts in, an :class:`S3Failure` out, read as a table);
:func:`failure_from_exception` extracts those facts from a boto3/botocore exception.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from destination_crowdtwist.config import S3Storage

#: The connection problem of a certificate that could not be verified (a setting fixes it, not a retry).
TLS_FAILED = "TLS handshake failed"

#: The ``permanent`` flag of an :class:`S3Failure`, named so the table rows below read as words.
PERMANENT, RETRYABLE = True, False

# S3's error codes by what they mean: the one table, read by explain() below and by the sync state
# (state/errors.py), which classifies the same answers of the same bucket.
#: "These keys may not do this": fix the policy.
DENIED_CODES = frozenset({"AccessDenied", "403", "Forbidden", "AllAccessDisabled", "AccountProblem"})
#: The keys themselves were not accepted (unknown key id, wrong secret).
BAD_KEY_CODES = frozenset({"InvalidAccessKeyId", "SignatureDoesNotMatch"})
#: Temporary credentials that are no longer valid.
EXPIRED_CODES = frozenset({"ExpiredToken", "InvalidToken", "TokenRefreshRequired"})
#: The bucket does not exist (``404`` / ``NotFound`` without a body: HeadBucket's answer).
NO_BUCKET_CODES = frozenset({"NoSuchBucket", "404", "NotFound"})
#: S3's own "try again later" answers.
BUSY_CODES = frozenset({"SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable"})


@dataclass(frozen=True)
class S3Failure:
    """Why a request to the bucket failed: ``permanent`` failures are not retried.

    ``kind`` is one of ``missing`` (no such bucket), ``region``, ``denied`` (access denied, or an
    unknown or mismatched key), ``credentials`` (none found, or expired), ``role``, ``unreachable``,
    ``server`` (5xx, throttling) and ``other``.
    """

    kind: str
    permanent: bool
    reason: str  # what went wrong, naming the bucket (never a key)
    fix: str  # what to do

    @property
    def message(self) -> str:
        """The user-facing sentence."""
        return f"{self.reason}. {self.fix}"


def explain(  # noqa: PLR0911 - one return per class of S3 failure, read as a table
    storage: S3Storage,
    *,
    code: str | None = None,
    status: int | None = None,
    bucket_region: str | None = None,
    connection: str | None = None,
    no_credentials: bool = False,
    role: bool = False,
) -> S3Failure:
    """The :class:`S3Failure` for an S3 error code / HTTP status, a connection problem or missing credentials.

    Pure; ``failure_from_exception`` extracts these facts from a boto3 exception.
    """
    bucket = f"S3 bucket {storage.s3_bucket_name!r}"
    where = f" at {storage.s3_endpoint}" if storage.s3_endpoint else ""
    region = storage.s3_bucket_region or "(not set)"
    if no_credentials:
        return S3Failure(
            "credentials", PERMANENT, "No AWS credentials were found for object_storage_config",
            "Set access_key_id and secret_access_key, or give the connector credentials through the AWS credential "
            "chain (environment, shared config, instance or container role).",
        )
    if connection == TLS_FAILED:
        target = storage.s3_endpoint or f"Amazon S3 in region {region}"
        # A certificate that cannot be verified fails the same way on every retry.
        trusted = ("the CA certificate in object_storage_config.s3_ca_certificate" if storage.s3_ca_certificate
                   else "the usual public certificate authorities")
        return S3Failure(
            "tls", PERMANENT, f"The TLS handshake with the S3 endpoint {target} failed: its certificate could not "
            f"be verified against {trusted}",
            "If the store's certificate comes from a private certificate authority, paste that authority's "
            "certificate (PEM) into object_storage_config.s3_ca_certificate (or point the AWS_CA_BUNDLE "
            "environment variable at a file holding it); also check that s3_endpoint is the https URL of the store.",
        )
    if connection is not None:
        target = storage.s3_endpoint or f"Amazon S3 in region {region}"
        return S3Failure(
            "unreachable", RETRYABLE, f"The S3 endpoint {target} is unreachable ({connection})",
            "Check object_storage_config.s3_endpoint and that this machine can reach it.",
        )
    if role:
        return S3Failure(
            "role", PERMANENT, f"The role {storage.role_arn} could not be assumed for {bucket} ({code})",
            "Check object_storage_config.role_arn, its trust policy (and external id), and the credentials allowed "
            "to assume it.",
        )
    if code in NO_BUCKET_CODES or (status == 404 and code != "NoSuchKey"):
        return S3Failure(
            "missing", PERMANENT, f"The {bucket} does not exist{where}",
            "Create it, or fix object_storage_config.s3_bucket_name (and s3_endpoint for an S3-compatible store).",
        )
    if code in ("PermanentRedirect", "301", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException") or (
        bucket_region and storage.s3_bucket_region and bucket_region != storage.s3_bucket_region
    ):
        actual = f"region {bucket_region}" if bucket_region else "another region"
        return S3Failure(
            "region", PERMANENT, f"The {bucket} is in {actual}, not in {region}",
            f"Set object_storage_config.s3_bucket_region to {bucket_region or 'the bucket region'}.",
        )
    if code == "InvalidAccessKeyId":
        return S3Failure(
            "denied", PERMANENT, f"S3 does not know the access key id configured for {bucket} (InvalidAccessKeyId)",
            "Copy object_storage_config.access_key_id again, or create a new access key.",
        )
    if code == "SignatureDoesNotMatch":
        return S3Failure(
            "denied", PERMANENT,
            f"S3 refused the request signature for {bucket} (SignatureDoesNotMatch): the secret access key "
            "does not belong to the access key id",
            "Copy object_storage_config.secret_access_key again.",
        )
    if code in EXPIRED_CODES:
        return S3Failure(
            "credentials", PERMANENT, f"The temporary AWS credentials used for {bucket} are no longer valid ({code})",
            "Renew them, or configure long-lived keys or a role_arn.",
        )
    if code in DENIED_CODES or status == 403:
        prefix = f"{storage.bucket_path}/*" if storage.bucket_path else "*"
        return S3Failure(
            "denied", PERMANENT, f"Access to {bucket} was denied ({code or 'HTTP 403'})",
            f"Allow the configured credentials s3:PutObject on {prefix} (check also needs s3:DeleteObject; "
            "s3:ListBucket lets it tell a missing bucket apart).",
        )
    if (status is not None and (status >= 500 or status in (408, 429))) or code in BUSY_CODES:
        return S3Failure(
            "server", RETRYABLE, f"S3 answered {code or 'an error'} (HTTP {status}) for {bucket}{where}",
            "This is usually temporary; try again later.",
        )
    return S3Failure(
        "other", PERMANENT, f"S3 refused the request for {bucket}{where} ({code or 'no error code'}, HTTP {status})",
        "Check object_storage_config.",
    )


def wrong_region(head_bucket_answer: Mapping[str, Any], storage: S3Storage) -> S3Failure | None:
    """The failure a HeadBucket answer means when it names another region than the configured one."""
    headers = (head_bucket_answer.get("ResponseMetadata") or {}).get("HTTPHeaders") or {}
    actual = headers.get("x-amz-bucket-region")
    if actual and storage.s3_bucket_region and actual != storage.s3_bucket_region:
        return explain(storage, bucket_region=actual)
    return None


class AssumeRoleFailed(Exception):
    """Raised from the AssumeRole call (its cause is botocore's error)."""


def failure_from_exception(exc: BaseException, storage: S3Storage) -> S3Failure:  # noqa: PLR0911 - one per type
    """The :class:`S3Failure` for a boto3/botocore exception (connection errors are retryable)."""
    from botocore import exceptions as boto_errors

    if isinstance(exc, AssumeRoleFailed):
        inner = exc.__cause__
        if isinstance(inner, boto_errors.ClientError):
            return explain(storage, code=str((inner.response.get("Error") or {}).get("Code")), role=True)
        if inner is not None:
            return failure_from_exception(inner, storage)
    if isinstance(exc, boto_errors.ClientError):
        response: Mapping[str, Any] = exc.response or {}
        error = response.get("Error") or {}
        meta = response.get("ResponseMetadata") or {}
        headers = meta.get("HTTPHeaders") or {}
        return explain(
            storage,
            code=str(error.get("Code")) if error.get("Code") is not None else None,
            status=meta.get("HTTPStatusCode"),
            bucket_region=headers.get("x-amz-bucket-region") or error.get("Region"),
        )
    if isinstance(exc, boto_errors.NoCredentialsError | boto_errors.PartialCredentialsError):
        return explain(storage, no_credentials=True)
    if isinstance(exc, boto_errors.ConnectTimeoutError | boto_errors.ReadTimeoutError):
        return explain(storage, connection="timed out")
    if isinstance(exc, boto_errors.SSLError):
        return explain(storage, connection=TLS_FAILED)
    if isinstance(exc, boto_errors.EndpointConnectionError | boto_errors.ConnectionClosedError):
        return explain(storage, connection="connection refused or closed")
    if isinstance(exc, boto_errors.ConnectionError | boto_errors.HTTPClientError | OSError):
        return explain(storage, connection=type(exc).__name__)
    if isinstance(exc, boto_errors.BotoCoreError):
        # Named by class only: botocore's own text may quote request parameters.
        return explain(storage, code=type(exc).__name__)
    raise exc

