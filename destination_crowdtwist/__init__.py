"""Airbyte destination for Oracle CrowdTwist."""

from __future__ import annotations
