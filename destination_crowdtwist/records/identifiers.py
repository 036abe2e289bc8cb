"""The member identifier types CrowdTwist accepts as ``id_type`` (one list for every layer).

It lives in the lowest layer so that both the record mapping and the connector configuration can
use it without an upward import. ``spec.json`` offers the same values as the ``enum`` of
``user_identifier_type``; unit_tests/test_config.py fails when the two disagree.
"""

from __future__ import annotations

from typing import Literal, get_args

__all__ = ["ID_TYPES", "IdType"]

IdType = Literal["email", "id", "third_party_id", "username", "mobile_phone_number"]
ID_TYPES: tuple[IdType, ...] = get_args(IdType)
