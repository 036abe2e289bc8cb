"""Fixtures for the integration tests: defined (and documented) in sandboxes.py, registered here by name.

The fault matrix's table is printed by a hook defined in faultmatrix.py, registered here the same way.
"""

from __future__ import annotations

from faultmatrix import pytest_terminal_summary
from sandboxes import hmac_sandbox, moto_s3, s3_bucket, sandbox, sandbox_factory, source_faker

__all__ = [
    "hmac_sandbox", "moto_s3", "pytest_terminal_summary", "s3_bucket", "sandbox", "sandbox_factory", "source_faker",
]
