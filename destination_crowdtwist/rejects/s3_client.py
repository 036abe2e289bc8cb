"""The boto3 client of the user's bucket: credentials, an assumed role refreshed by botocore, TLS
trust, and one deadline per call.

Keys come from the config, or from the standard AWS credential chain when empty; with ``role_arn``
those credentials assume the role (external id from ``AWS_ASSUME_ROLE_EXTERNAL_ID``, as Airbyte's
own connectors read it; STS at ``s3_endpoint`` when one is set), and botocore's
``RefreshableCredentials`` assume it again before it expires. boto3 is imported only when a client is
made, so the CDK-free layers stay light.

botocore's own retries are off (``total_max_attempts`` 1): S3 calls are retried in one place,
``rejects/s3_calls.py``, with the connector's backoff (why not botocore's retry modes: see there).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import tempfile
import time
from datetime import datetime
from typing import Any

from destination_crowdtwist.api.deadline import Watch, Watchdog, watch_socket
from destination_crowdtwist.config import S3Storage
from destination_crowdtwist.rejects.s3_failures import AssumeRoleFailed, S3Failure, failure_from_exception

logger = logging.getLogger("airbyte")

# botocore logs request headers at DEBUG, and the Authorization header names the access key id:
# whatever level the host process sets, these loggers never go below WARNING.
for _name in ("boto3", "botocore", "s3transfer", "urllib3"):
    logging.getLogger(_name).setLevel(logging.WARNING)

_SESSION_NAME = "airbyte-destination-crowdtwist"
#: The expiry of role credentials whose answer names none (an S3-compatible store): never refreshed.
_NO_EXPIRY = "9999-12-31T00:00:00+00:00"


class S3Client:
    """A boto3 S3 client for the configured bucket (see the module docstring).

    Each call of :attr:`client` has one deadline, connect + read timeout, for the whole exchange;
    :meth:`close` stops the deadline watchdog and removes the CA certificate file.
    """

    def __init__(self, storage: S3Storage, *, connect_timeout: float = 10.0, read_timeout: float = 60.0) -> None:
        import boto3
        from botocore.config import Config

        self.storage = storage
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
        # One deadline per call, from connecting to the last byte (botocore has only socket timeouts,
        # which a server trickling its status line a byte at a time never trips).
        self._deadline = connect_timeout + read_timeout
        self._watchdog = Watchdog()

    @property
    def client(self) -> Any:
        """The boto3 client (made, and the role assumed, on first use); each of its calls has one
        deadline, connect + read timeout, for the whole exchange (a late call raises botocore's
        ``ReadTimeoutError``).
        """
        if self._client is None:
            session = self._role_session() if self.storage.role_arn else self._session
            boto_client = session.client(
                "s3", region_name=self._region, endpoint_url=self.storage.s3_endpoint, config=self._config,
                verify=self.verify,
            )
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

    def failure(self, exc: BaseException) -> S3Failure:
        """What went wrong, in words."""
        return failure_from_exception(exc, self.storage)

    def _role_session(self) -> Any:
        """A boto3 session whose credentials are the role's: assumed now (a role that cannot be assumed
        fails here), and again by botocore before they expire (its advisory and mandatory refresh).
        """
        import boto3
        import botocore.session
        from botocore.credentials import CredentialProvider, CredentialResolver, RefreshableCredentials

        role_arn = str(self.storage.role_arn)
        # An S3-compatible store that supports roles serves STS at its own endpoint (MinIO does).
        sts = self._session.client(
            "sts", region_name=self._region, endpoint_url=self.storage.s3_endpoint, config=self._config,
            verify=self.verify,
        )
        options: dict[str, Any] = {"RoleArn": role_arn, "RoleSessionName": _SESSION_NAME}
        external_id = os.environ.get("AWS_ASSUME_ROLE_EXTERNAL_ID")
        if external_id:
            options["ExternalId"] = external_id

        def assume() -> dict[str, str]:
            try:
                assumed = sts.assume_role(**options)["Credentials"]
            except Exception as exc:
                raise AssumeRoleFailed(role_arn) from exc
            expiration = assumed.get("Expiration")
            return {
                "access_key": assumed["AccessKeyId"],
                "secret_key": assumed["SecretAccessKey"],
                "token": assumed["SessionToken"],
                "expiry_time": expiration.isoformat() if isinstance(expiration, datetime) else _NO_EXPIRY,
            }

        credentials = RefreshableCredentials.create_from_metadata(assume(), refresh_using=assume, method="assume-role")

        class AssumedRole(CredentialProvider):
            METHOD = "assume-role"

            def load(self) -> Any:
                return credentials

        role = botocore.session.get_session()
        role.register_component("credential_provider", CredentialResolver([AssumedRole()]))
        return boto3.session.Session(botocore_session=role)


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

