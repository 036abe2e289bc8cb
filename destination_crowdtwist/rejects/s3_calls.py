"""Calls to the user's bucket, retried in one place with the connector's backoff.

S3 calls are retried here only (botocore's retries are off, ``rejects/s3_client.py``), with the
connector's schedule (``api/retry.py``: ``RetryPolicy``'s ``max_retries`` and ``backoff_delay``, capped
exponential with equal jitter, the cap being ``max_retry_wait_seconds``). botocore's retry modes
(``standard``, ``adaptive``) were weighed and not used, because they would change what the tests pin:

* they retry a TLS handshake that failed on an unverifiable certificate (botocore's ``SSLError`` is a
  ``ConnectionError``), which a setting fixes, not a retry; here the S3 failure table decides
  (``rejects/s3_failures.py``: permanent failures are never retried);
* their backoff is theirs (full jitter from 50 ms, capped at 20 s): ``max_retry_wait_seconds`` would
  not bound it and an unreachable endpoint would be given up on within a second;
* they sleep inside the call: no WARNING line says a retry is coming and why, tests cannot pass a
  sleep, and the per-call deadline (``api/deadline.py``) would cover every attempt at once.

A failure that is permanent, or outlasts the retries, becomes a ``ConfigError`` or ``TransientError``
whose message names the bucket, says what to fix and what happens to the sync.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from destination_crowdtwist.api.errors import ConfigError, CrowdTwistError, TransientError
from destination_crowdtwist.api.retry import RetryPolicy, backoff_delay
from destination_crowdtwist.rejects.s3_client import S3Client
from destination_crowdtwist.rejects.s3_failures import S3Failure

logger = logging.getLogger("airbyte")

T = TypeVar("T")


class Refused(Exception):
    """Raised by a call whose answer was a success that still means failure (a bucket in another region)."""

    def __init__(self, failure: S3Failure) -> None:
        super().__init__(failure.message)
        self.failure = failure


class BucketCalls:
    """Runs calls to the bucket of ``client`` with retries (see the module docstring)."""

    def __init__(
        self,
        client: S3Client,
        policy: RetryPolicy,
        *,
        sleep: Callable[[float], None] = time.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.client = client
        self._policy = policy
        self._sleep = sleep
        self._rand = rand

    def run(self, call: Callable[[], T], what: str, *, then: str) -> T:
        """``call()``'s result; retried while its failure is retryable and retries are left.

        Raises a ``ConfigError`` (permanent) or ``TransientError`` (retries exhausted) reading
        "{what} in {location}: {reason}[ after N attempts]. {fix} {then}", without a chained cause
        (botocore's text may quote request parameters).
        """
        policy = self._policy
        retry = 0
        while True:
            try:
                return call()
            except Refused as refused:
                failure = refused.failure
            except Exception as exc:  # noqa: BLE001 - classified by failure(), which re-raises the unknown
                failure = self.client.failure(exc)
            if failure.permanent or retry >= policy.max_retries:
                raise self._error(failure, what, then, attempts=retry + 1) from None
            retry += 1
            delay = backoff_delay(retry, base=policy.base, cap=policy.cap, rand=self._rand)
            logger.warning(f"{failure.reason}; retrying in {delay:.1f} s (retry {retry} of {policy.max_retries})")
            self._sleep(delay)

    def _error(self, failure: S3Failure, what: str, then: str, *, attempts: int) -> CrowdTwistError:
        tries = "" if failure.permanent else f" after {attempts} attempts"
        message = f"{what} in {self.client.storage.location}: {failure.reason}{tries}. {failure.fix} {then}"
        return ConfigError(message) if failure.permanent else TransientError(message)
