"""The integration tests' sandboxes and services, as fixtures (registered by conftest.py) and constants.

``sandbox``          a fresh instance with default options (API-key auth with ``SANDBOX_API_KEY``).
``sandbox_factory``  ``sandbox_factory(options=None, **knobs) -> Sandbox``: started now, stopped at teardown.
``hmac_sandbox``     an instance that requires HMAC with ``HMAC_PUBLIC_KEY`` / ``HMAC_PRIVATE_KEY``.
Start and stop take a few milliseconds each.
``moto_s3``          a real S3 API (moto_server on 127.0.0.1, IAM auth on), one per session (moto_s3.py).
``s3_bucket``        a new, empty bucket on it for one test.
``source_faker``     source-faker in its own cached venv, one per session (faker_source.py); skips, with
                     pip's reason, when it cannot be installed.

Tests import the constants and ``SandboxFactory`` from here, not from conftest.py: pytest imports every
``conftest.py`` under the one module name ``conftest``, so which one an import found depended on the order
the directories were collected in (and mypy cannot check two modules of one name in one run).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from faker_source import FakerUnavailable, InstallReport, ensure_source_faker
from moto_s3 import MotoS3

from crowdtwist_sandbox import Sandbox, SandboxOptions

# Dummy credentials (public on purpose). SANDBOX_API_KEY is the sandbox default key.
SANDBOX_API_KEY = "ctsbx_3f9a2c7e1b8d4e6f9a0b3c5d7e9f1a2b"
HMAC_PUBLIC_KEY = "CTPUBsbx7Kq2Wm9Zr4Tn6Yp1Xc8Vb3Nd5Lf0"
HMAC_PRIVATE_KEY = "CTPRIVsbxH4s9Jd2Kf7Lg1Qw6Er3Ty8Ui5Op0Az"

SandboxFactory = Callable[..., Sandbox]


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    """A running sandbox with default options."""
    with Sandbox(SandboxOptions(api_key=SANDBOX_API_KEY)) as sb:
        yield sb


@pytest.fixture
def sandbox_factory() -> Iterator[SandboxFactory]:
    """Start sandboxes with given options/knobs; all are stopped at teardown."""
    started: list[Sandbox] = []

    def factory(options: SandboxOptions | None = None, **knobs: Any) -> Sandbox:
        if options is None:
            knobs.setdefault("api_key", SANDBOX_API_KEY)
            options = SandboxOptions(**knobs)
        elif knobs:
            options = dataclasses.replace(options, **knobs)
        sb = Sandbox(options).start()
        started.append(sb)
        return sb

    yield factory
    for sb in started:
        sb.stop()


@pytest.fixture
def hmac_sandbox(sandbox_factory: SandboxFactory) -> Sandbox:
    """A running sandbox in HMAC mode (API key alone refused)."""
    return sandbox_factory(hmac_public_key=HMAC_PUBLIC_KEY, hmac_private_key=HMAC_PRIVATE_KEY)


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[MotoS3]:
    """moto's S3 server for the whole session (about half a second to start)."""
    with MotoS3() as server:
        yield server


@pytest.fixture
def s3_bucket(moto_s3: MotoS3) -> str:
    """The name of a new, empty bucket."""
    name = f"rejects-{uuid.uuid4().hex[:12]}"
    moto_s3.create_bucket(name)
    return name


@pytest.fixture(scope="session")
def source_faker() -> InstallReport:
    """source-faker in its own cached venv; skips (with pip's reason) when it cannot be installed."""
    try:
        report = ensure_source_faker()
    except FakerUnavailable as exc:
        pytest.skip(str(exc))
    how = "reused cached venv" if report.reused else f"installed in {report.seconds:.1f} s"
    print(f"source-faker: {how} ({report.executable})")
    return report
