"""One typed fake of :class:`~destination_crowdtwist.api.protocol.CrowdTwistApi` for every writer test.

Answers are scripted per endpoint (:meth:`FakeApi.expect`, used in order) or computed per call
(:meth:`FakeApi.always`, e.g. :class:`MemberBook`, a tiny model of CrowdTwist's members for tests that
run several syncs). A call nothing answers fails the test at once; an answer left unused fails it at
the end (:meth:`FakeApi.assert_done`, which the ``api`` fixture of ``unit_tests/conftest.py`` runs).

Each answer becomes a real :class:`ApiResponse`, classified by the real error table, and the fake keeps
the client's contract (``api/protocol.py``): it returns only OK and REJECT answers and raises what the
client raises for the others (``ConfigError``; ``TransientError``, or ``UncertainOutcome`` for a credit,
once retries would have run out). So the reasons the writers see are the ones production gives them.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from destination_crowdtwist.api.errors import Action, ConfigError, CrowdTwistError, TransientError, UncertainOutcome
from destination_crowdtwist.api.response import ApiResponse

Endpoint = Literal[
    "get_user", "create_user", "update_user", "delete_user", "deletion_status", "credit_activity", "activity_history"
]

#: The endpoint templates the client names its answers by (the error table reads the path from them).
TEMPLATES: Mapping[Endpoint, str] = {
    "get_user": "GET /v2/users/{user_id}",
    "create_user": "POST /v2/users",
    "update_user": "PUT /v2/users/{user_id}",
    "delete_user": "DELETE /v2/users/{user_id}",
    "deletion_status": "GET /v2/users/delete/{user_id}",
    "credit_activity": "POST /v2/users/{user_id}/activities",
    "activity_history": "GET /v2.1/users/{user_id}/activity_history",
}


@dataclass(frozen=True)
class Call:
    """One request the writer made: the endpoint and what it passed."""

    endpoint: Endpoint
    user_id: str | None = None
    id_type: str | None = None
    payload: dict[str, Any] | None = None
    page: int | None = None
    page_size: int | None = None

    @property
    def method(self) -> str:
        """The HTTP method (``GET``, ``POST``, ``PUT``, ``DELETE``)."""
        return TEMPLATES[self.endpoint].split(" ")[0]


@dataclass(frozen=True)
class Reply:
    """One CrowdTwist answer: a status and a JSON body, or a text body (``html``: an HTML page)."""

    status: int
    body: Any = None
    text: str | None = None
    html: bool = False
    after_uncertain: bool = False  # an earlier attempt of the same request may have landed (client retry)


#: What a call may be answered with: a reply, or the error the client would raise.
Answer = Reply | CrowdTwistError
Responder = Callable[[Call], Answer]
Step = tuple[Endpoint, Answer]


def response(endpoint: Endpoint, reply: Reply) -> ApiResponse:
    """The :class:`ApiResponse` the client builds for ``reply`` (classified by the real table)."""
    content_type = "text/html" if reply.html else "application/json" if reply.text is None else "text/plain"
    data = reply.body if reply.text is None else None
    message = data.get("message") if isinstance(data, Mapping) else None
    return ApiResponse(
        reply.status, data, {"Content-Type": content_type}, text=reply.text, request_line=TEMPLATES[endpoint],
        endpoint=TEMPLATES[endpoint], safe_message=message if isinstance(message, str) else reply.text,
        after_uncertain=reply.after_uncertain,
    )


class FakeApi:
    """A scripted CrowdTwist; see the module docstring. ``calls`` lists every request, in order."""

    def __init__(self, *, activities: Sequence[Mapping[str, Any]] = (), now: float = 1_700_000_000.0) -> None:
        self.activities = [dict(a) for a in activities]
        self.calls: list[Call] = []
        self.now = now  # epoch seconds; wait() moves it, so writers given clock=api.clock never sleep
        self.waits: list[float] = []
        self._queued: defaultdict[Endpoint, deque[Answer]] = defaultdict(deque)
        self._always: dict[Endpoint, Responder] = {}

    # -- scripting ------------------------------------------------------------------------------

    def expect(self, endpoint: Endpoint, *answers: Answer) -> FakeApi:
        """Answer the next calls of ``endpoint`` with ``answers``, in order (each used once)."""
        self._queued[endpoint].extend(answers)
        return self

    def script(self, *steps: Step) -> FakeApi:
        """:meth:`expect` for each ``(endpoint, answer)``."""
        for endpoint, answer in steps:
            self.expect(endpoint, answer)
        return self

    def always(self, endpoint: Endpoint, answer: Answer | Responder) -> FakeApi:
        """Answer calls of ``endpoint`` that nothing queued answers: with ``answer``, or what it computes."""
        self._always[endpoint] = answer if callable(answer) else (lambda _call: answer)
        return self

    def assert_done(self) -> None:
        """Fail when a queued answer was never asked for."""
        left = {endpoint: len(answers) for endpoint, answers in self._queued.items() if answers}
        assert not left, f"scripted answers never used: {left}"

    # -- what happened ------------------------------------------------------------------------------

    def to(self, endpoint: Endpoint) -> list[Call]:
        """The calls made to one endpoint, in order."""
        return [call for call in self.calls if call.endpoint == endpoint]

    def methods(self) -> list[str]:
        """The HTTP method of every call, in order."""
        return [call.method for call in self.calls]

    def clock(self) -> float:
        """Epoch seconds as this fake's waits moved them (pass as a writer's ``clock``)."""
        return self.now

    # -- CrowdTwistApi ----------------------------------------------------------------------------

    def list_activities(self) -> list[dict[str, Any]]:
        """The active activities given to the constructor."""
        return [dict(a) for a in self.activities]

    def get_user(self, user_id: str, id_type: str) -> ApiResponse:
        """Scripted ``GET /v2/users/{user_id}``."""
        return self._answer(Call("get_user", user_id, id_type))

    def create_user(self, payload: Mapping[str, Any]) -> ApiResponse:
        """Scripted ``POST /v2/users``."""
        return self._answer(Call("create_user", payload=dict(payload)))

    def update_user(self, user_id: str, id_type: str, payload: Mapping[str, Any]) -> ApiResponse:
        """Scripted ``PUT /v2/users/{user_id}``."""
        return self._answer(Call("update_user", user_id, id_type, dict(payload)))

    def delete_user(self, user_id: str, id_type: str) -> ApiResponse:
        """Scripted ``DELETE /v2/users/{user_id}``."""
        return self._answer(Call("delete_user", user_id, id_type))

    def deletion_status(self, crowdtwist_id: str) -> ApiResponse:
        """Scripted ``GET /v2/users/delete/{user_id}`` (the CrowdTwist id is the call's ``user_id``)."""
        return self._answer(Call("deletion_status", crowdtwist_id))

    def credit_activity(self, user_id: str, id_type: str, payload: Mapping[str, Any]) -> ApiResponse:
        """Scripted ``POST /v2/users/{user_id}/activities``."""
        return self._answer(Call("credit_activity", user_id, id_type, dict(payload)))

    def activity_history(
        self, user_id: str, id_type: str, date_start: int, date_end: int, *, page: int | None = None,
        page_size: int | None = None,
    ) -> ApiResponse:
        """Scripted ``GET /v2.1/users/{user_id}/activity_history`` (the page is on the call)."""
        return self._answer(Call("activity_history", user_id, id_type, page=page, page_size=page_size))

    def wait(self, seconds: float) -> None:
        """Move the fake clock instead of sleeping."""
        self.waits.append(seconds)
        self.now += max(0.0, seconds)

    # -- answering ---------------------------------------------------------------------------------

    def _answer(self, call: Call) -> ApiResponse:
        self.calls.append(call)
        queued = self._queued[call.endpoint]
        if queued:
            answer = queued.popleft()
        else:
            respond = self._always.get(call.endpoint)
            assert respond is not None, f"unexpected call: {call}"
            answer = respond(call)
        if isinstance(answer, CrowdTwistError):
            raise answer
        return _as_client_returns(call, response(call.endpoint, answer))


def _as_client_returns(call: Call, answer: ApiResponse) -> ApiResponse:
    """``answer`` when the client would return it (OK, REJECT); else the error the client raises."""
    resolution = answer.resolution
    if resolution.action in (Action.OK, Action.REJECT):
        return answer
    context: dict[str, Any] = {
        "status": answer.status, "error_code": answer.error_code, "api_message": answer.safe_message,
        "request_line": answer.request_line,
    }
    if resolution.action is Action.CONFIG:
        raise ConfigError(resolution.hint, **context)
    if call.endpoint == "credit_activity":
        raise UncertainOutcome(resolution.hint, **context)  # a credit is never retried blindly
    raise TransientError(resolution.hint, **context)


# -- a model of CrowdTwist's members ------------------------------------------------------------------

NOT_FOUND = {"error": "page_not_found", "message": "User does not exist."}
TAKEN = {"error": "input_error", "message": "email_address already taken."}


@dataclass
class MemberBook:
    """Members by email, for tests of several syncs: an update of an unknown member is "not found", a
    create of a known one "already taken", as CrowdTwist answers. :meth:`serve` answers ``api``'s
    member calls from it.
    """

    members: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def of(cls, *emails: str) -> MemberBook:
        """A book holding these members (CrowdTwist ids 1, 2, ...)."""
        return cls({email: {"id": n + 1} for n, email in enumerate(emails)})

    def serve(self, api: FakeApi) -> FakeApi:
        """Answer ``api``'s get, create and update calls from this book."""
        return api.always("get_user", self.get).always("create_user", self.create).always("update_user", self.update)

    def get(self, call: Call) -> Reply:
        """The member's profile, or "not found"."""
        member = self.members.get(str(call.user_id))
        return Reply(404, NOT_FOUND) if member is None else Reply(200, dict(member))

    def create(self, call: Call) -> Reply:
        """A new member (ids from 100 up), or "already taken"."""
        payload = call.payload or {}
        email = str(payload["email_address"])
        if email in self.members:
            return Reply(400, TAKEN)
        self.members[email] = {"id": 100 + len(self.members), **payload}
        return Reply(200, dict(self.members[email]))

    def update(self, call: Call) -> Reply:
        """The updated profile, or "not found"."""
        member = self.members.get(str(call.user_id))
        if member is None:
            return Reply(404, NOT_FOUND)
        member.update(call.payload or {})
        return Reply(200, dict(member))
