"""A faithful local fake of the CrowdTwist REST API v2."""

from __future__ import annotations
