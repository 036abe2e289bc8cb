"""What the writers need from CrowdTwist: exactly the endpoint calls they make, as a protocol.

The writers (``writers/``) depend on :class:`CrowdTwistApi`, not on the concrete
``CrowdTwistClient``: the client satisfies it structurally, and the writer tests drive the writers
through one typed fake of it (``tests_support/fake_api.py``).

The contract every implementation keeps (the client's, ``api/client.py``): an endpoint call returns
an :class:`ApiResponse` only for answers the error table calls OK or REJECT, classified once
(``response.resolution``: the action and, for a REJECT, the row's ``reason``); every other answer
raises: ``ConfigError`` when the user must fix something (credentials, base URL), ``TransientError``
when retries ran out, ``UncertainOutcome`` when a credit may have landed without an answer. So a
writer decides on ``response.ok`` and ``response.resolution.reason``, never on an HTTP status.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from destination_crowdtwist.api.response import ApiResponse


class CrowdTwistApi(Protocol):
    """The CrowdTwist endpoints the writers call (see the module docstring for what they return)."""

    def list_activities(self) -> list[dict[str, Any]]:
        """``GET /v2/activities``: the program's active activities (raises ConfigError if it cannot be read)."""
        ...

    def get_user(self, user_id: str, id_type: str) -> ApiResponse:
        """``GET /v2/users/{user_id}``: the member's profile (REJECT ``not_found`` when unknown)."""
        ...

    def create_user(self, payload: Mapping[str, Any]) -> ApiResponse:
        """``POST /v2/users``: create a member (REJECT ``already_taken`` when an identifier belongs to one)."""
        ...

    def update_user(self, user_id: str, id_type: str, payload: Mapping[str, Any]) -> ApiResponse:
        """``PUT /v2/users/{user_id}``: partial update (REJECT ``not_found`` when the member does not exist)."""
        ...

    def delete_user(self, user_id: str, id_type: str) -> ApiResponse:
        """``DELETE /v2/users/{user_id}``: queue the member's erasure."""
        ...

    def deletion_status(self, crowdtwist_id: str) -> ApiResponse:
        """``GET /v2/users/delete/{user_id}``: the status of a queued erasure, by CrowdTwist id."""
        ...

    def credit_activity(self, user_id: str, id_type: str, payload: Mapping[str, Any]) -> ApiResponse:
        """``POST /v2/users/{user_id}/activities``: credit points; raises UncertainOutcome, never retries blindly."""
        ...

    def activity_history(
        self, user_id: str, id_type: str, date_start: int, date_end: int, *, page: int | None = None,
        page_size: int | None = None,
    ) -> ApiResponse:
        """``GET /v2.1/users/{user_id}/activity_history``: one page of the member's credits between two dates."""
        ...

    def wait(self, seconds: float) -> None:
        """Sleep up to ``seconds``, returning early when the sync stops (the writers' pauses)."""
        ...
