"""Fixtures shared by the unit tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests_support.fake_api import FakeApi


@pytest.fixture
def api() -> Iterator[FakeApi]:
    """The scripted CrowdTwist of the writer tests; fails the test when a scripted answer was never used."""
    fake = FakeApi()
    yield fake
    fake.assert_done()
