"""Fixtures for the integration tests: defined (and documented) in sandboxes.py, registered here by name."""

from __future__ import annotations

from sandboxes import hmac_sandbox, moto_s3, s3_bucket, sandbox, sandbox_factory, source_faker

__all__ = ["hmac_sandbox", "moto_s3", "s3_bucket", "sandbox", "sandbox_factory", "source_faker"]
