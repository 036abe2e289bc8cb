"""A faithful local fake of the Oracle CrowdTwist REST API v2, for tests, demos and benchmarks.

    from crowdtwist_sandbox import Sandbox, SandboxOptions
    with Sandbox(SandboxOptions(rate_limit_per_minute=600)) as sb:
        sb.base_url  # "http://127.0.0.1:PORT"

Behaviour follows docs/crowdtwist-api-notes.md; everything marked NOT FOUND there is simulator-defined here.
"""

from __future__ import annotations

from crowdtwist_sandbox.options import (
    DEFAULT_ACTIVITIES,
    DEFAULT_API_KEY,
    EXAMPLE_HMAC_PRIVATE_KEY,
    EXAMPLE_HMAC_PUBLIC_KEY,
    SandboxOptions,
)
from crowdtwist_sandbox.server import Sandbox

__all__ = [
    "DEFAULT_ACTIVITIES",
    "DEFAULT_API_KEY",
    "EXAMPLE_HMAC_PRIVATE_KEY",
    "EXAMPLE_HMAC_PUBLIC_KEY",
    "Sandbox",
    "SandboxOptions",
]
