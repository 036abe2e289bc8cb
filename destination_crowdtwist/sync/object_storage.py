"""Rejected rows in the user's bucket: Airbyte's ``object_storage_config`` (S3), written with boto3.

On the Airbyte platform, rows a destination rejects belong in the user's own bucket; the platform
links a sync's Timeline to ``s3://{bucket}/{bucket_path}/{sync_id}/`` when rows were rejected. This
module writes them there in Airbyte's object-storage layout, one line (JSONL) or row (CSV) per
rejected record::

    {"_airbyte_raw_id": "…", "_airbyte_extracted_at": 1764400000000, "_airbyte_generation_id": 3,
     "_airbyte_meta": {"sync_id": 42, "changes": [],
                       "rejection": {"reason": "location", "message": "…", "http_status": null,
                                     "field": "postal_code"}},
     "_airbyte_data": {…the record as received…}}

at ``{bucket_path}/{path_format}{file_name_format}`` (docs/crowdtwist.md, "Rejected rows in your S3
bucket").

Durability is part of the checkpoint contract: :class:`S3RejectSink` buffers rows and uploads one
object per stream at each :meth:`~S3RejectSink.flush`, which the destination calls before it echoes
the states that cover them; an upload that still fails after the retries raises a ``ConfigError`` or
``TransientError`` naming the bucket, and those states are never echoed.

The pure parts (line layout, path expansion, encoding, error explanations) are plain functions
tested exactly; boto3 is imported only when a client is made, so the CDK-free layers stay light.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import gzip
import io
import json
import logging
import os
import random
import re
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from destination_crowdtwist.api.deadline import Watch, Watchdog, watch_socket
from destination_crowdtwist.api.errors import ConfigError, CrowdTwistError, TransientError
from destination_crowdtwist.api.retry import RetryPolicy, backoff_delay
from destination_crowdtwist.config import S3Storage
from destination_crowdtwist.records.rejection import Reason
from destination_crowdtwist.writers.base import Outcome, Row, StreamContext

logger = logging.getLogger("airbyte")

# botocore logs request headers at DEBUG, and the Authorization header names the access key id:
# whatever level the host process sets, these loggers never go below WARNING.
for _name in ("boto3", "botocore", "s3transfer", "urllib3"):
    logging.getLogger(_name).setLevel(logging.WARNING)

#: The columns of Airbyte's object-storage layout, in its order (CSV header, JSONL key order).
#: The connection problem of a certificate that could not be verified (a setting fixes it, not a retry).
TLS_FAILED = "TLS handshake failed"
AIRBYTE_COLUMNS = ("_airbyte_raw_id", "_airbyte_extracted_at", "_airbyte_meta", "_airbyte_generation_id")
DATA_COLUMN = "_airbyte_data"

#: Upload early when this many bytes of rejected rows wait for the next checkpoint (durable sooner
#: is never wrong), so a flood of rejections between two states cannot exhaust memory.
DEFAULT_MAX_BUFFER_BYTES = 8 * 1024 * 1024
#: Role sessions are renewed this long before they expire.
_ROLE_REFRESH_MARGIN = 300.0
_SESSION_NAME = "airbyte-destination-crowdtwist"
_VARIABLE = re.compile(r"\{([^{}]*)\}")
_DATE_TOKENS = {"yyyy": "%Y", "MM": "%m", "dd": "%d", "HH": "%H", "mm": "%M", "ss": "%S"}
_DATE_TOKEN = re.compile("|".join(_DATE_TOKENS))


# --- the layout of one rejected line -------------------------------------------------------------------


def rejected_line(
    row: Row, outcome: Outcome, *, new_id: Callable[[], str] = lambda: str(uuid.uuid4())
) -> dict[str, Any]:
    """One rejected record in Airbyte's layout (keys in :data:`AIRBYTE_COLUMNS` order, then ``_airbyte_data``).

    ``_airbyte_raw_id`` is the record's own when it carries one (a re-sent row keeps its id), else a
    new UUID. The rejection message and field are masked (they may quote the row's values and keys, and
    CrowdTwist's message may echo the input): ``_airbyte_meta`` is metadata, read by people who never
    asked for the data. ``_airbyte_data`` is the record as received, unmasked: the bucket is the
    user's, and fixing a row needs its data.
    """
    stream = row.stream
    own_id = row.data.get("_airbyte_raw_id")
    rejection = outcome.rejection
    return {
        "_airbyte_raw_id": own_id if isinstance(own_id, str) and own_id else new_id(),
        "_airbyte_extracted_at": row.emitted_at,
        "_airbyte_meta": {
            "sync_id": stream.sync_id if stream.sync_id is not None else 0,
            "changes": [],
            "rejection": {
                "reason": str(outcome.reason or Reason.REJECTED_BY_API),
                "message": outcome.text(masked=True),
                "http_status": outcome.status,
                "field": rejection.masked_field if rejection is not None else None,
            },
        },
        "_airbyte_generation_id": stream.generation_id if stream.generation_id is not None else 0,
        DATA_COLUMN: dict(row.data),
    }


def flatten_line(line: Mapping[str, Any]) -> dict[str, Any]:
    """"Root level flattening": the record's top-level fields next to the ``_airbyte_`` columns
    (a field named like one of those columns is dropped: the column wins).
    """
    flat = {name: line[name] for name in AIRBYTE_COLUMNS}
    for name, value in line[DATA_COLUMN].items():
        flat.setdefault(name, value)
    return flat


def encode_part(lines: Sequence[Mapping[str, Any]], storage: S3Storage) -> bytes:
    """The bytes of one object: JSON lines or CSV with a header, flattened and gzipped as configured."""
    flatten = storage.flattening == "Root level flattening"
    rows = [flatten_line(line) if flatten else dict(line) for line in lines]
    if storage.format_type == "JSONL":
        text = "".join(json.dumps(row, ensure_ascii=False, default=str) + "\n" for row in rows)
    else:
        columns: dict[str, None] = dict.fromkeys((*AIRBYTE_COLUMNS, *(() if flatten else (DATA_COLUMN,))))
        for row in rows:
            columns.update(dict.fromkeys(row))
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_csv_cell(row.get(name)) for name in columns])
        text = buffer.getvalue()
    data = text.encode("utf-8")
    # mtime=0: the same rows give the same bytes (the object's name carries the time).
    return gzip.compress(data, mtime=0) if storage.compression_type == "GZIP" else data


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def format_extension(storage: S3Storage) -> str:
    """``.jsonl`` or ``.csv``, plus ``.gz`` with GZIP (Airbyte's ``{format_extension}``)."""
    extension = ".jsonl" if storage.format_type == "JSONL" else ".csv"
    return extension + (".gz" if storage.compression_type == "GZIP" else "")


def content_type(storage: S3Storage) -> str:
    """The object's Content-Type."""
    if storage.compression_type == "GZIP":
        return "application/gzip"
    return "application/jsonl" if storage.format_type == "JSONL" else "text/csv"


# --- where objects go ------------------------------------------------------------------------------------


def path_values(stream: StreamContext, started_at: datetime) -> dict[str, str]:
    """The values of ``path_format``'s variables for one stream (time: the sync's start, UTC).

    As in Airbyte's writer, month and day are not zero-padded and ``{epoch}`` is in milliseconds.
    """
    return {
        "sync_id": str(stream.sync_id if stream.sync_id is not None else 0),
        "generation_id": str(stream.generation_id if stream.generation_id is not None else 0),
        "namespace": stream.namespace or "",
        "stream_name": stream.name,
        "year": str(started_at.year),
        "month": str(started_at.month),
        "day": str(started_at.day),
        "epoch": str(int(started_at.timestamp() * 1000)),
    }


def file_name_values(
    stream: StreamContext, storage: S3Storage, started_at: datetime, part_number: int
) -> dict[str, str]:
    """The values of ``file_name_format``'s variables (``{date:…}`` is expanded by :func:`expand`)."""
    millis = started_at.microsecond // 1000
    return {
        "date": started_at.strftime("%Y-%m-%d"),
        "timestamp": started_at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{millis:03d}Z",
        "part_number": str(part_number),
        "sync_id": str(stream.sync_id if stream.sync_id is not None else 0),
        "format_extension": format_extension(storage),
    }


def expand(template: str, values: Mapping[str, str], started_at: datetime) -> str:
    """Replace every ``{variable}`` of ``template``; ``{date:yyyy_MM}`` formats ``started_at``.

    The config refused unknown variables already, so one here is a programming error (KeyError).
    """

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name.startswith("date:"):
            pattern = _DATE_TOKEN.sub(lambda token: _DATE_TOKENS[token.group(0)], name[5:].replace("%", "%%"))
            return started_at.strftime(pattern)
        return values[name]

    return _VARIABLE.sub(one, template)


def object_key(storage: S3Storage, stream: StreamContext, started_at: datetime, part_number: int) -> str:
    """``{bucket_path}/{path_format}{file_name_format}`` expanded; empty segments (no namespace) dropped,
    as Airbyte's writer does when it joins the parts as a path.
    """
    directory = expand(storage.path_format, path_values(stream, started_at), started_at)
    name = expand(storage.file_name_format, file_name_values(stream, storage, started_at, part_number), started_at)
    return "/".join(segment for segment in f"{storage.bucket_path}/{directory}/{name}".split("/") if segment)


def known_variables() -> tuple[frozenset[str], frozenset[str]]:
    """The variables this module expands (tests check they are exactly the config's)."""
    stream = StreamContext(None, "s", "append")
    epoch = datetime(2000, 1, 1, tzinfo=UTC)
    files = set(file_name_values(stream, S3Storage("b"), epoch, 1)) | {"date:PATTERN"}
    return frozenset(path_values(stream, epoch)), frozenset(files)


# --- what S3 answered, in words a user can act on ---------------------------------------------------------


#: The ``permanent`` flag of an :class:`S3Failure`, named so the table rows below read as words.
PERMANENT, RETRYABLE = True, False


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
    if code in ("NoSuchBucket", "404", "NotFound") or (status == 404 and code != "NoSuchKey"):
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
    if code in ("ExpiredToken", "InvalidToken", "TokenRefreshRequired"):
        return S3Failure(
            "credentials", PERMANENT, f"The temporary AWS credentials used for {bucket} are no longer valid ({code})",
            "Renew them, or configure long-lived keys or a role_arn.",
        )
    if code in ("AccessDenied", "403", "Forbidden", "AllAccessDisabled", "AccountProblem") or status == 403:
        prefix = f"{storage.bucket_path}/*" if storage.bucket_path else "*"
        return S3Failure(
            "denied", PERMANENT, f"Access to {bucket} was denied ({code or 'HTTP 403'})",
            f"Allow the configured credentials s3:PutObject on {prefix} (check also needs s3:DeleteObject; "
            "s3:ListBucket lets it tell a missing bucket apart).",
        )
    if (status is not None and (status >= 500 or status in (408, 429))) or code in (
        "SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable",
    ):
        return S3Failure(
            "server", RETRYABLE, f"S3 answered {code or 'an error'} (HTTP {status}) for {bucket}{where}",
            "This is usually temporary; try again later.",
        )
    return S3Failure(
        "other", PERMANENT, f"S3 refused the request for {bucket}{where} ({code or 'no error code'}, HTTP {status})",
        "Check object_storage_config.",
    )


class _AssumeRoleFailed(Exception):
    """Raised from the AssumeRole call (its cause is botocore's error)."""


def failure_from_exception(exc: BaseException, storage: S3Storage) -> S3Failure:  # noqa: PLR0911 - one per type
    """The :class:`S3Failure` for a boto3/botocore exception (connection errors are retryable)."""
    from botocore import exceptions as boto_errors

    if isinstance(exc, _AssumeRoleFailed):
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


# --- the client ------------------------------------------------------------------------------------------


class S3Client:
    """A boto3 S3 client for the configured bucket that renews an assumed role before it expires.

    Keys come from the config, or from the standard AWS credential chain when empty; with
    ``role_arn`` those credentials assume the role (external id from ``AWS_ASSUME_ROLE_EXTERNAL_ID``,
    as Airbyte's own connectors read it; STS at ``s3_endpoint`` when one is set). No retries
    inside botocore: the callers retry with the connector's backoff, so every wait is logged and
    bounded.
    """

    def __init__(
        self, storage: S3Storage, *, connect_timeout: float = 10.0, read_timeout: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        import boto3
        from botocore.config import Config

        self.storage = storage
        self._clock = clock
        self._session = boto3.session.Session(
            aws_access_key_id=storage.access_key_id,
            aws_secret_access_key=storage.secret_access_key,
        )
        # botocore verifies against a file, so a configured CA certificate is written to one (removed
        # by close()); None keeps botocore's default (its bundle, or AWS_CA_BUNDLE).
        self._ca_file: str | None = None
        if storage.s3_ca_certificate:
            fd, self._ca_file = tempfile.mkstemp(prefix="crowdtwist-s3-ca-", suffix=".pem")
            with os.fdopen(fd, "w", encoding="ascii", errors="replace") as fh:
                fh.write(storage.s3_ca_certificate)
        self.verify: str | None = self._ca_file
        self._region = storage.s3_bucket_region or self._session.region_name or "us-east-1"
        self._config = Config(
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"total_max_attempts": 1},
            # S3-compatible stores rarely serve virtual-host bucket names.
            s3={"addressing_style": "path"} if storage.s3_endpoint else {},
            user_agent_extra=_SESSION_NAME,
        )
        self._client: Any = None
        self._expires_at: float | None = None
        # One deadline per call, from connecting to the last byte (botocore has only socket timeouts,
        # which a server trickling its status line a byte at a time never trips).
        self._deadline = connect_timeout + read_timeout
        self._watchdog = Watchdog()

    @property
    def client(self) -> Any:
        """The boto3 client (a new one when an assumed role is about to expire); each of its calls has
        one deadline, connect + read timeout, for the whole exchange (a late call raises botocore's
        ``ReadTimeoutError``).
        """
        if self._client is None or (self._expires_at is not None and self._clock() > self._expires_at):
            boto_client = self._make()
            _watch_connections(boto_client)
            self._client = _DeadlineCalls(boto_client, self._watchdog, self._deadline)
        return self._client

    def close(self) -> None:
        """Stop the deadline watchdog's thread; remove the CA certificate file."""
        self._watchdog.close()
        if self._ca_file is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._ca_file)
            self._ca_file = None

    def _make(self) -> Any:
        storage = self.storage
        credentials: dict[str, Any] = {}
        if storage.role_arn:
            # An S3-compatible store that supports roles serves STS at its own endpoint (MinIO does).
            sts = self._session.client(
                "sts", region_name=self._region, endpoint_url=storage.s3_endpoint, config=self._config,
                verify=self.verify,
            )
            options: dict[str, Any] = {"RoleArn": storage.role_arn, "RoleSessionName": _SESSION_NAME}
            external_id = os.environ.get("AWS_ASSUME_ROLE_EXTERNAL_ID")
            if external_id:
                options["ExternalId"] = external_id
            try:
                assumed = sts.assume_role(**options)["Credentials"]
            except Exception as exc:
                raise _AssumeRoleFailed(storage.role_arn) from exc
            credentials = {
                "aws_access_key_id": assumed["AccessKeyId"],
                "aws_secret_access_key": assumed["SecretAccessKey"],
                "aws_session_token": assumed["SessionToken"],
            }
            expiration = assumed.get("Expiration")
            if isinstance(expiration, datetime):
                self._expires_at = expiration.timestamp() - _ROLE_REFRESH_MARGIN
        return self._session.client(
            "s3", region_name=self._region, endpoint_url=storage.s3_endpoint, config=self._config,
            verify=self.verify, **credentials
        )

    def failure(self, exc: BaseException) -> S3Failure:
        """What went wrong, in words."""
        return failure_from_exception(exc, self.storage)


class _DeadlineCalls:
    """A boto3 client whose every call is watched: its socket is cut once ``seconds`` have passed."""

    def __init__(self, client: Any, watchdog: Watchdog, seconds: float) -> None:
        self._client = client
        self._watchdog = watchdog
        self._seconds = seconds

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._client, name)
        if name.startswith("_") or name == "meta" or not callable(value):
            return value

        @functools.wraps(value)
        def call(*args: Any, **kwargs: Any) -> Any:
            with self._watchdog.watching(Watch(time.monotonic() + self._seconds)) as watch:
                try:
                    return value(*args, **kwargs)
                except Exception:
                    if not watch.was_cut:
                        raise
                    from botocore.exceptions import ReadTimeoutError

                    # Classified like any timeout (failure_from_exception): retried, then "timed out".
                    raise ReadTimeoutError(endpoint_url=self.storage_endpoint) from None

        return call

    @property
    def storage_endpoint(self) -> str:
        return str(getattr(self._client.meta, "endpoint_url", ""))


def _watch_connections(client: Any) -> None:
    """Make the boto3 client's connections hand their sockets to the watchdog (api/deadline.py).

    botocore keeps its urllib3 pool classes on its HTTP session; a botocore without them (another
    version) keeps the socket timeouts only.
    """
    http = getattr(getattr(client, "_endpoint", None), "http_session", None)
    manager = getattr(http, "_manager", None)
    if http is None or manager is None or not hasattr(http, "_pool_classes_by_scheme"):
        logger.warning("This botocore keeps its connections to itself: S3 calls have socket timeouts only.")
        return
    pools = _watched_pool_classes()
    http._pool_classes_by_scheme = pools
    manager.pool_classes_by_scheme = pools


@functools.cache
def _watched_pool_classes() -> dict[str, Any]:
    from botocore.awsrequest import (
        AWSHTTPConnection,
        AWSHTTPConnectionPool,
        AWSHTTPSConnection,
        AWSHTTPSConnectionPool,
    )

    class WatchedAWSHTTPConnection(AWSHTTPConnection):
        def connect(self) -> None:
            super().connect()
            watch_socket(self.sock)

        def request(self, *args: Any, **kwargs: Any) -> Any:
            watch_socket(self.sock)  # a reused keep-alive connection: connect() is not called again
            return super().request(*args, **kwargs)

    class WatchedAWSHTTPSConnection(AWSHTTPSConnection):
        def connect(self) -> None:
            super().connect()
            watch_socket(self.sock)

        def request(self, *args: Any, **kwargs: Any) -> Any:
            watch_socket(self.sock)
            return super().request(*args, **kwargs)

    class WatchedHTTPPool(AWSHTTPConnectionPool):
        ConnectionCls = WatchedAWSHTTPConnection

    class WatchedHTTPSPool(AWSHTTPSConnectionPool):
        ConnectionCls = WatchedAWSHTTPSConnection

    return {"http": WatchedHTTPPool, "https": WatchedHTTPSPool}


# --- the sink --------------------------------------------------------------------------------------------


@dataclass
class _Pending:
    stream: StreamContext
    lines: list[dict[str, Any]] = field(default_factory=list)
    size: int = 0


class S3RejectSink:
    """A :class:`~destination_crowdtwist.sync.reject_sinks.RejectSink` that uploads to the user's bucket.

    Rows are buffered per stream; :meth:`flush` uploads one object (part) per stream with new rows,
    numbered 1, 2, ... per stream, and returns only when S3 confirmed every upload. Failures are
    retried with the connector's backoff; a permanent failure, or one that outlasts the retries,
    raises a ``ConfigError`` / ``TransientError`` naming the bucket. Rows are kept until uploaded.
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
        self._client = client if client is not None else S3Client(storage, clock=clock)
        self._policy = policy
        self._sleep = sleep
        self._rand = rand
        self._new_id = new_id
        self._max_buffer_bytes = max_buffer_bytes
        # Path and file-name times are the sync's start, as in Airbyte's writer: one sync's objects
        # stay in one folder, and part numbers order them.
        self.started_at = datetime.fromtimestamp(clock(), UTC)
        self._pending: dict[tuple[str | None, str], _Pending] = {}
        self._buffered = 0
        self._parts: dict[tuple[str | None, str], int] = {}
        self._error: CrowdTwistError | None = None  # the failure raised already, raised again on any later use
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
            headers = (response.get("ResponseMetadata") or {}).get("HTTPHeaders") or {}
            actual = headers.get("x-amz-bucket-region")
            if actual and storage.s3_bucket_region and actual != storage.s3_bucket_region:
                raise _Refused(explain(storage, bucket_region=actual))

        self._with_retries(head, "Rejected rows cannot be stored", then="The sync stops before its first row.")

    def add(self, row: Row, outcome: Outcome) -> None:
        """Buffer one rejected row; upload early when the buffer is full."""
        if self._error is not None:
            raise self._error
        line = rejected_line(row, outcome, new_id=self._new_id)
        size = len(json.dumps(line, ensure_ascii=False, default=str)) + 1
        pending = self._pending.setdefault(row.stream.key, _Pending(row.stream))
        pending.lines.append(line)
        pending.size += size
        self._buffered += size
        if self._buffered >= self._max_buffer_bytes:
            self.flush()

    def add_change(self, row: Row, outcome: Outcome) -> None:
        """Dry-run rows are not kept: the bucket holds rejected rows only (and a dry run has no sink here)."""

    def flush(self) -> None:
        """Upload every stream's buffered rows as one new object each; raise if that is impossible.

        Once an upload failed, every later call raises that error again: no later checkpoint may be
        confirmed while earlier rows are stored nowhere.
        """
        if self._error is not None:
            raise self._error
        for key in list(self._pending):
            pending = self._pending[key]
            number = self._parts.get(key, 0) + 1
            object_name = object_key(self.storage, pending.stream, self.started_at, number)
            body = encode_part(pending.lines, self.storage)
            self._upload(object_name, body, len(pending.lines))
            self._parts[key] = number
            del self._pending[key]
            self._buffered -= pending.size

    def close(self) -> None:
        """Upload what is left (rows after the last state). After a failure that was raised, let go."""
        try:
            if self._error is not None:
                self._pending.clear()
                return
            self.flush()
        finally:
            self._client.close()

    def _upload(self, key: str, body: bytes, rows: int) -> None:
        storage = self.storage

        def put() -> None:
            self._client.client.put_object(
                Bucket=storage.s3_bucket_name, Key=key, Body=body, ContentType=content_type(storage)
            )

        self._with_retries(
            put, f"{rows} rejected rows could not be stored",
            then="The sync stops without confirming the checkpoints that cover them; rows already written to "
            "CrowdTwist stay written.",
        )
        self.uploaded.append((key, rows))
        logger.info(f"Stored {rows} rejected rows in s3://{storage.s3_bucket_name}/{key}")

    def _with_retries(self, call: Callable[[], None], what: str, *, then: str) -> None:
        retry = 0
        while True:
            try:
                call()
            except _Refused as refused:
                failure = refused.failure
            except Exception as exc:  # noqa: BLE001 - classified by failure(), which re-raises the unknown
                failure = self._client.failure(exc)
            else:
                return
            if failure.permanent or retry >= self._policy.max_retries:
                self._error = self._failure_error(failure, what, then, attempts=retry + 1)
                raise self._error from None
            retry += 1
            delay = backoff_delay(retry, base=self._policy.base, cap=self._policy.cap, rand=self._rand)
            logger.warning(f"{failure.reason}; retrying in {delay:.1f} s (retry {retry} of {self._policy.max_retries})")
            self._sleep(delay)

    def _failure_error(self, failure: S3Failure, what: str, then: str, *, attempts: int) -> CrowdTwistError:
        tries = "" if failure.permanent else f" after {attempts} attempts"
        message = f"{what} in {self.storage.location}: {failure.reason}{tries}. {failure.fix} {then}"
        return ConfigError(message) if failure.permanent else TransientError(message)


class _Refused(Exception):
    def __init__(self, failure: S3Failure) -> None:
        super().__init__(failure.message)
        self.failure = failure


# --- check -----------------------------------------------------------------------------------------------


def probe(
    storage: S3Storage, *, client: S3Client | None = None, new_id: Callable[[], str] = lambda: uuid.uuid4().hex
) -> str | None:
    """``check``: write and delete a small object under ``bucket_path``; None, or what is wrong.

    HeadBucket first tells a missing bucket and a wrong region apart (it answers with the bucket's
    region); a 403 there is left to the upload, which names the reason (unknown key, wrong secret,
    denied). Nothing in the answer holds a secret.
    """
    own: S3Client | None = None
    try:
        s3 = client if client is not None else (own := S3Client(storage, connect_timeout=5.0, read_timeout=20.0))
        try:
            response = s3.client.head_bucket(Bucket=storage.s3_bucket_name)
            headers = (response.get("ResponseMetadata") or {}).get("HTTPHeaders") or {}
            actual = headers.get("x-amz-bucket-region")
            if actual and storage.s3_bucket_region and actual != storage.s3_bucket_region:
                return _check_message(explain(storage, bucket_region=actual))
        except Exception as exc:  # noqa: BLE001 - classified by failure(), which re-raises the unknown
            failure = s3.failure(exc)
            if failure.kind != "denied":
                return _check_message(failure)
        key = "/".join(part for part in (storage.bucket_path, f"_airbyte_connection_check_{new_id()}") if part)
        try:
            s3.client.put_object(Bucket=storage.s3_bucket_name, Key=key, Body=b'{"data":1}\n')
        except Exception as exc:  # noqa: BLE001 - classified by failure(), which re-raises the unknown
            return _check_message(s3.failure(exc))
        try:
            s3.client.delete_object(Bucket=storage.s3_bucket_name, Key=key)
        except Exception as exc:  # noqa: BLE001 - classified by failure(), which re-raises the unknown
            failure = s3.failure(exc)
            return (
                f"Rejected rows can be written to {storage.location} but the check object {key} could not be deleted: "
                f"{failure.reason}. Allow s3:DeleteObject, or delete the object yourself."
            )
    except Exception as exc:  # noqa: BLE001 - classified by failure_from_exception, which re-raises the unknown
        # Making the client (or assuming the role) failed.
        return _check_message(failure_from_exception(exc, storage))
    finally:
        if own is not None:
            own.close()
    return None


def _check_message(failure: S3Failure) -> str:
    return f"Rejected rows cannot be stored in the bucket of object_storage_config: {failure.message}"
