"""The error envelope the sandbox answers with, and the canned errors shared by several modules."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An HTTP error answer: status plus CrowdTwist's ``{"error": ..., "message": ...}`` body."""

    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(f"{status} {error}: {message}")
        self.status = status
        self.error = error
        self.message = message

    def body(self) -> dict[str, Any]:
        """The JSON body: only the two documented keys (no numeric status in the body, §5)."""
        return {"error": self.error, "message": self.message}


def user_not_found() -> ApiError:
    """404 for an unknown member ("User does not exist." from public QA code, code from 2ND)."""
    return ApiError(404, "page_not_found", "User does not exist.")


def invalid_api_key() -> ApiError:
    """403 "Invalid API key" (status documented; body text assumed)."""
    return ApiError(403, "invalid_api_key", "Invalid API key")


def internal_error() -> ApiError:
    """The injected 500 (body from the secondary error-code list)."""
    return ApiError(500, "internal_error", "Something went wrong on our end.")
