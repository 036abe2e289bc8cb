"""Request handling independent of the socket layer: routing, auth, faults, endpoints, admin API.

`SandboxEngine.handle` takes a parsed request (raw target, headers, raw body) and returns a
`Reply`. The HTTP server only does I/O: it writes the reply, or drops the connection when the reply
says so. Faults are applied to API endpoints only, never to ``/__sandbox/``.
"""

from __future__ import annotations

import dataclasses
import json
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote

from crowdtwist_sandbox import hmac_auth
from crowdtwist_sandbox.errors import ApiError, internal_error, invalid_api_key, user_not_found
from crowdtwist_sandbox.faults import FaultDice, RateLimiter, retry_after_header
from crowdtwist_sandbox.options import SandboxOptions, json_to_changes, options_to_json, replace_options
from crowdtwist_sandbox.profile import render_activity
from crowdtwist_sandbox.state import (
    DOCUMENTED_UNSUPPORTED_ID_TYPES,
    SUPPORTED_ID_TYPES,
    ProgramState,
    event_key,
    seed_all,
)
from crowdtwist_sandbox.validation import validate_credit_payload, validate_user_payload

ADMIN_PREFIX = "/__sandbox/"
CREDIT_ENDPOINT = "POST /v2/users/{id}/activities"
# Counter keys that always exist, even at zero.
BASE_COUNTERS = ("total", "429", "500", "503", "dropped")

MAINTENANCE_HTML = (
    b"<!DOCTYPE html>\n<html><head><title>Scheduled Maintenance</title></head>"
    b"<body><h1>We'll be back soon</h1><p>CrowdTwist is undergoing scheduled maintenance. "
    b"Please try again later.</p></body></html>\n"
)


class HeaderLookup(Protocol):
    """Case-insensitive header access (``email.message.Message`` satisfies it)."""

    def get(self, name: str, default: None = None) -> str | None:
        """The header value, or None."""


@dataclass
class Reply:
    """What to answer: status, body and headers, or ``drop`` to close the socket without answering."""

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)
    drop: bool = False
    # Seconds between the bytes of the status line and headers (0: written at once).
    trickle_headers: float = 0.0

    @classmethod
    def json(cls, status: int, data: Any, headers: list[tuple[str, str]] | None = None) -> Reply:
        """A JSON reply."""
        return cls(status, json.dumps(data).encode("utf-8"), headers=headers or [])

    @classmethod
    def error(cls, err: ApiError) -> Reply:
        """A reply carrying the error envelope."""
        return cls.json(err.status, err.body())


@dataclass(frozen=True)
class _Route:
    pattern: re.Pattern[str]
    template: str
    methods: Mapping[str, str]


_ROUTES = (
    _Route(re.compile(r"^/v2/activities/?$"), "/v2/activities", {"GET": "list_activities"}),
    _Route(re.compile(r"^/v2/users/?$"), "/v2/users", {"POST": "create_user"}),
    # Both /v2/users/{id} and the Kit's /v2/users/{id}/ are accepted (§2.4).
    _Route(re.compile(r"^/v2/users/([^/]+)/?$"), "/v2/users/{id}",
           {"GET": "get_user", "PUT": "update_user", "DELETE": "delete_user"}),
    _Route(re.compile(r"^/v2/users/([^/]+)/activities/?$"), "/v2/users/{id}/activities", {"POST": "credit"}),
    # User Deletion Status (§2.4), by CrowdTwist id only: Oracle's endpoint line says /v2/users/delete/{id},
    # its sample request /v2/user_deletion/{id}; both are served (which one is right is NOT FOUND).
    _Route(re.compile(r"^/v2/users/delete/([^/]+)/?$"), "/v2/users/delete/{id}", {"GET": "deletion_status"}),
    _Route(re.compile(r"^/v2/user_deletion/([^/]+)/?$"), "/v2/user_deletion/{id}", {"GET": "deletion_status"}),
    _Route(
        re.compile(r"^/v2\.1/users/([^/]+)/activity_history/?$"),
        "/v2.1/users/{id}/activity_history",
        {"GET": "history"},
    ),
)


@dataclass
class _Request:
    method: str
    target: str
    path: str
    query: dict[str, list[str]]
    headers: HeaderLookup
    body: bytes

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None


def split_target(raw_target: str) -> tuple[str, str, str]:
    """Split a request target into (request URI as signed, path, raw query).

    An absolute-form target (``http://host/path?q``) is reduced to its path + query, because the
    signature covers the URI "after the host" (§1.3).
    """
    target = raw_target
    if "://" in target.split("?", 1)[0]:
        after_scheme = target.split("://", 1)[1]
        slash = after_scheme.find("/")
        target = after_scheme[slash:] if slash >= 0 else "/"
    path, _, query = target.partition("?")
    return target, path, query


class SandboxEngine:
    """All behaviour of one sandbox instance; thread-safe."""

    def __init__(self, options: SandboxOptions) -> None:
        self.options = options
        self.state = ProgramState(first_member_id=options.first_member_id)
        self._counter_lock = threading.Lock()
        self._counters: dict[str, int] = {}
        self._fault_lock = threading.Lock()
        self.reset()

    # ------------------------------------------------------------------ control
    def reset(self) -> None:
        """Members, activities, credits, counters, limiter and random sequence back to the seeded start."""
        opts = self.options
        self.state.clear(opts.first_member_id)
        seed_all(self.state, opts.activities, opts.members, opts.clock())
        with self._counter_lock:
            self._counters = dict.fromkeys(BASE_COUNTERS, 0)
        with self._fault_lock:
            self._limiter = self._make_limiter(opts)
            self._dice = FaultDice(opts.seed)
            self._maintenance_remaining = opts.maintenance_first_n

    @staticmethod
    def _make_limiter(opts: SandboxOptions) -> RateLimiter | None:
        if opts.rate_limit_per_minute is None:
            return None
        return RateLimiter(opts.rate_limit_per_minute, opts.rate_limit_algorithm, opts.rate_limit_burst)

    def set_options(self, **changes: Any) -> SandboxOptions:
        """Change knobs at run time; returns the new options.

        Rate-limit (or clock) changes restart the limiter, a new ``seed`` restarts the random sequence, a new
        ``maintenance_first_n`` counts from now, new ``activities`` replace the current ones.
        """
        new = replace_options(self.options, **changes)
        with self._fault_lock:
            self.options = new
            # A new clock invalidates the limiter's remembered timestamps, so it restarts too.
            if {"rate_limit_per_minute", "rate_limit_algorithm", "rate_limit_burst", "clock"} & set(changes):
                self._limiter = self._make_limiter(new)
            if "seed" in changes:
                self._dice = FaultDice(new.seed)
            if "maintenance_first_n" in changes:
                self._maintenance_remaining = new.maintenance_first_n
        if "activities" in changes:
            self.state.replace_activities(new.activities)
        return new

    def counters(self) -> dict[str, int]:
        """Request counters: per endpoint key, per status code, ``total`` and ``dropped``."""
        with self._counter_lock:
            return dict(self._counters)

    def _count(self, *keys: str) -> None:
        with self._counter_lock:
            for key in keys:
                self._counters[key] = self._counters.get(key, 0) + 1

    # ------------------------------------------------------------------ entry point
    def handle(self, method: str, raw_target: str, headers: HeaderLookup, body: bytes) -> Reply:
        """Answer one HTTP request."""
        target, path, query = split_target(raw_target)
        request = _Request(method.upper(), target, path, parse_qs(query, keep_blank_values=True), headers, body)
        if path.startswith(ADMIN_PREFIX) or path == ADMIN_PREFIX.rstrip("/"):
            return self._admin_delete(request) if request.method == "DELETE" else self._admin(request)
        return self._api(request)

    # ------------------------------------------------------------------ API
    def _api(self, request: _Request) -> Reply:
        opts = self.options
        route, action, match = self._route(request)
        endpoint = f"{request.method} {route.template}" if route is not None else "OTHER"
        self._count("total", endpoint)

        reply = self._edge_faults(opts) if opts.refuse_immediately else None
        if reply is not None:
            # Refused at the edge on arrival (``refuse_immediately``): no latency, no work.
            self._count(str(reply.status))
            return reply
        latency = self._dice.latency_ms(opts.latency_distribution, opts.latency_ms, opts.latency_spread_ms)
        if latency > 0:
            opts.sleep(latency / 1000.0)

        if not opts.refuse_immediately:
            reply = self._edge_faults(opts)
        reply = reply or self._authenticate(request, opts)
        if reply is None:
            reply = self._dispatch(request, route, action, match, opts)
            droppable = route is not None and (endpoint == CREDIT_ENDPOINT or not opts.drop_credits_only)
            if droppable and self._dice.chance(opts.drop_rate):
                # The request was fully applied above; the client only loses the answer.
                self._count("dropped")
                return Reply(0, b"", drop=True)
        if self._dice.chance(opts.slow_rate) and opts.slow_ms > 0:
            opts.sleep(opts.slow_ms / 1000.0)
        self._count(str(reply.status))
        if self._dice.chance(opts.trickle_headers_rate):
            self._count("trickled_headers")
            reply = dataclasses.replace(reply, trickle_headers=opts.trickle_headers_interval_ms / 1000.0)
        return reply

    def _edge_faults(self, opts: SandboxOptions) -> Reply | None:
        """Maintenance and rate limiting happen before auth, like a load balancer in front (assumed)."""
        now = opts.clock()
        window = opts.maintenance_window
        in_window = window is not None and window[0] <= now < window[1]
        with self._fault_lock:
            counted_down = self._maintenance_remaining > 0
            if counted_down:
                self._maintenance_remaining -= 1
            limiter = self._limiter
        if counted_down or in_window:
            # Maintenance answers HTML, not JSON (Oracle community post on scheduled maintenance).
            return Reply(503, MAINTENANCE_HTML, content_type="text/html; charset=UTF-8")
        if limiter is not None:
            decision = limiter.check(now)
            if not decision.allowed:
                headers = [("Retry-After", retry_after_header(decision.retry_after))] if opts.retry_after else []
                # 429 and its body are not documented by CrowdTwist (§5); body assumed.
                return Reply.json(
                    429, {"error": "rate_limit_exceeded", "message": "Too many requests"}, headers=headers
                )
        return None

    def _authenticate(self, request: _Request, opts: SandboxOptions) -> Reply | None:
        header = request.headers.get("X-CT-Authorization")
        if opts.hmac_enabled:
            assert opts.hmac_public_key is not None
            assert opts.hmac_private_key is not None
            verdict = hmac_auth.verify_request(
                method=request.method,
                request_target=request.target,
                body=request.body,
                authorization=header,
                timestamp=request.headers.get("X-CT-Timestamp"),
                content_type=request.headers.get("Content-Type"),
                public_key=opts.hmac_public_key,
                private_key=opts.hmac_private_key,
                now=opts.clock(),
                window_seconds=opts.hmac_window_seconds,
                accept_seconds=opts.hmac_accept_seconds,
            )
            if verdict.ok:
                return None
            return Reply.error(ApiError(verdict.status, verdict.error, verdict.message))
        keys = list(request.query.get("api_key", []))
        if header is not None:
            scheme, _, value = header.partition(" ")
            if scheme == "CTApiKey":
                keys.append(value)
        if any(key == opts.api_key for key in keys):
            return None
        return Reply.error(invalid_api_key())

    def _route(self, request: _Request) -> tuple[_Route | None, str | None, re.Match[str] | None]:
        for route in _ROUTES:
            match = route.pattern.match(request.path)
            if match:
                return route, route.methods.get(request.method), match
        return None, None, None

    def _dispatch(
        self,
        request: _Request,
        route: _Route | None,
        action: str | None,
        match: re.Match[str] | None,
        opts: SandboxOptions,
    ) -> Reply:
        if route is None or match is None:
            return Reply.error(ApiError(404, "page_not_found", "Page not found"))
        if action is None:
            # Real answer for a wrong method is NOT FOUND; 405 assumed.
            return Reply.error(ApiError(405, "method_not_allowed", f"{request.method} is not supported here"))
        inject = self._dice.chance(opts.error_rate)
        if inject and not opts.error_after_apply:
            return Reply.error(internal_error())
        handler: Callable[[_Request, re.Match[str], SandboxOptions], Reply] = getattr(self, f"_ep_{action}")
        try:
            reply = handler(request, match, opts)
        except ApiError as err:
            if opts.echo_input_in_errors and err.status == 400:
                err = ApiError(err.status, err.error, f"{err.message} for {_echo_input(request)}")
            reply = Reply.error(err)
        if inject:
            # error_after_apply: the change landed but the client sees a 500 (an "uncertain outcome").
            return Reply.error(internal_error())
        return reply

    # ------------------------------------------------------------------ endpoint helpers
    @staticmethod
    def _json_body(request: _Request) -> dict[str, Any]:
        content_type = (request.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        if content_type != "application/json":
            # "Content-Type: application/json — required for POST and PUT" [DOC]; the error body is assumed.
            raise ApiError(400, "param_error", "Content-Type must be application/json")
        try:
            data = json.loads(request.body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ApiError(400, "param_error", "Request body is not valid JSON") from None
        if not isinstance(data, dict):
            raise ApiError(400, "param_error", "Request body must be a JSON object")
        return data

    def _member_id(self, request: _Request, match: re.Match[str], opts: SandboxOptions) -> int:
        id_type = request.param("id_type")
        if id_type is None:
            id_type = "id"  # documented default (§2.1)
        if id_type not in SUPPORTED_ID_TYPES:
            if id_type in DOCUMENTED_UNSUPPORTED_ID_TYPES:
                raise ApiError(400, "param_error", f"id_type {id_type} is not supported by the sandbox")
            raise ApiError(400, "param_error", f"Invalid id_type: {id_type}")
        # The path segment may be percent-encoded (emails); decode before lookup, never before signing.
        value = unquote(match.group(1))
        member = self.state.find(id_type, value, opts.clock())
        if member is None:
            raise user_not_found()
        member_id: int = member["id"]
        return member_id

    # ------------------------------------------------------------------ endpoints
    def _ep_list_activities(self, request: _Request, match: re.Match[str], opts: SandboxOptions) -> Reply:
        return Reply.json(200, [render_activity(a) for a in self.state.activities()])

    def _ep_create_user(self, request: _Request, match: re.Match[str], opts: SandboxOptions) -> Reply:
        payload = self._json_body(request)
        now = opts.clock()
        changes = validate_user_payload(
            payload, creating=True, custom_attributes=opts.custom_attributes,
            strict_location=opts.strict_location, now=now,
        )  # fmt: skip
        # 200 (not 201) + full profile, as captured in the Starter Kit.
        return Reply.json(200, self.state.create(changes, now))

    def _ep_get_user(self, request: _Request, match: re.Match[str], opts: SandboxOptions) -> Reply:
        # The `pii` parameter (§2.1) is accepted and ignored: the sandbox always returns PII.
        member_id = self._member_id(request, match, opts)
        return Reply.json(200, self.state.profile(member_id, opts.clock()))

    def _ep_update_user(self, request: _Request, match: re.Match[str], opts: SandboxOptions) -> Reply:
        member_id = self._member_id(request, match, opts)
        payload = self._json_body(request)
        now = opts.clock()
        changes = validate_user_payload(
            payload, creating=False, custom_attributes=opts.custom_attributes,
            strict_location=opts.strict_location, now=now,
        )  # fmt: skip
        return Reply.json(200, self.state.update(member_id, changes, now))

    def _ep_delete_user(self, request: _Request, match: re.Match[str], opts: SandboxOptions) -> Reply:
        try:
            member_id = self._member_id(request, match, opts)
        except ApiError as err:
            if err.status == 404:
                # The User Delete page's own text for this case (§5); error code assumed.
                raise ApiError(404, "page_not_found", "Member not found") from None
            raise
        body = self.state.queue_deletion(
            member_id, opts.clock(), delay=opts.deletion_delay_ms / 1000.0,
            refuse=member_id in opts.undeletable_member_ids,
        )
        return Reply.json(200, body)

    def _ep_deletion_status(self, request: _Request, match: re.Match[str], opts: SandboxOptions) -> Reply:
        raw = unquote(match.group(1))
        if not raw.isdigit():
            raise ApiError(404, "page_not_found", "Member does not exist or not queued for deletion")
        return Reply.json(200, self.state.deletion_status(int(raw), opts.clock()))

    def _ep_credit(self, request: _Request, match: re.Match[str], opts: SandboxOptions) -> Reply:
        member_id = self._member_id(request, match, opts)
        payload = self._json_body(request)
        credit = validate_credit_payload(payload, self.state.activity_ids())
        body = self.state.credit(
            member_id,
            credit,
            opts.clock(),
            event_key=event_key(payload) if opts.duplicate_detection else None,
            duplicate_window=opts.duplicate_window_seconds if opts.duplicate_detection else None,
            queue_delay=opts.queue_delay_ms / 1000.0,
        )
        return Reply.json(200, body)

    def _ep_history(self, request: _Request, match: re.Match[str], opts: SandboxOptions) -> Reply:
        member_id = self._member_id(request, match, opts)
        bounds: list[int | None] = []
        for name in ("date_start", "date_end"):
            raw = request.param(name)
            if raw is None or raw == "":
                bounds.append(None)
                continue
            try:
                bounds.append(int(raw))
            except ValueError:
                raise ApiError(400, "param_error", f"{name} must be a UNIX timestamp") from None
        page = self._positive_param(request, "page", 1)
        size = min(self._positive_param(request, "page_size", opts.history_page_size), opts.history_max_page_size)
        shape = opts.history_answer_shape
        if shape != "paged":
            self._count(f"history:{shape}")  # proves in a test that the fault was served
        # Faults first: answers that prove nothing about the member's credits.
        if shape == "user_not_found":
            raise user_not_found()  # for a member that exists
        if shape in ("null", "empty_object"):
            return Reply.json(200, None if shape == "null" else {})
        items = self.state.history(member_id, opts.clock(), bounds[0], bounds[1])
        if shape == "bare_array":
            return Reply.json(200, items)  # the legacy v2 shape: every item, no paging
        # The v2.1 list shape (§3, §6): {"paging": {total, pages, prev_page, next_page}, "activities": [...]}.
        # Page numbers (not links) in prev_page/next_page, and a page past the end being empty, are assumed.
        pages = max(1, -(-len(items) // size))
        next_page: int | None = page + 1 if page < pages else None
        if shape == "endless_pages":
            pages, next_page = page + 1, page + 1
        if next_page is not None:
            self._count("history_next_page")
        prev_page = min(page - 1, pages) or None
        paging = {"total": len(items), "pages": pages, "prev_page": prev_page, "next_page": next_page}
        key = "sandbox_unknown_list" if shape == "unknown_key" else "activities"
        return Reply.json(200, {"paging": paging, key: items[(page - 1) * size : page * size]})

    @staticmethod
    def _positive_param(request: _Request, name: str, default: int) -> int:
        raw = request.param(name)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            value = 0
        if value < 1:
            raise ApiError(400, "param_error", f"{name} must be a positive integer")
        return value

    # ------------------------------------------------------------------ admin API (no auth, no faults)
    def _admin_delete(self, request: _Request) -> Reply:
        """``DELETE /__sandbox/members/{id}``: a member deleted outside the connector, at once."""
        name = request.path[len(ADMIN_PREFIX) :].strip("/")
        member_id = name[len("members/") :] if name.startswith("members/") else ""
        if not member_id.isdigit():
            return Reply.json(404, {"error": "page_not_found", "message": f"No admin endpoint DELETE {name}"})
        try:
            return Reply.json(200, self.state.delete_member(int(member_id)))
        except ApiError as err:
            return Reply.error(err)

    def _admin(self, request: _Request) -> Reply:
        name = request.path[len(ADMIN_PREFIX) :].strip("/")
        now = self.options.clock()
        try:
            if request.method == "GET":
                getters: dict[str, Callable[[], Any]] = {
                    "members": lambda: self.state.profiles(now),
                    "deletions": self.state.deletions,
                    "credits": self.state.credits,
                    "counters": self.counters,
                    "activities": self.state.activities,
                    "options": lambda: options_to_json(self.options),
                    "health": lambda: {"ok": True},
                }
                if name in getters:
                    return Reply.json(200, getters[name]())
            elif request.method == "POST":
                data = json.loads(request.body or b"{}")
                if not isinstance(data, dict):
                    raise ValueError("body must be a JSON object")  # noqa: TRY301 - answered as a 400 below
                if name == "members":
                    return Reply.json(200, self.state.seed_member(data, now))
                if name == "activities":
                    return Reply.json(200, self.state.add_activity(**data))
                if name == "reset":
                    self.reset()
                    return Reply.json(200, {"ok": True})
                if name == "options":
                    new = self.set_options(**json_to_changes(self.options, data))
                    return Reply.json(200, options_to_json(new))
        except ApiError as err:
            return Reply.error(err)
        except (ValueError, TypeError, KeyError) as exc:
            return Reply.json(400, {"error": "sandbox_admin_error", "message": str(exc)})
        return Reply.json(404, {"error": "page_not_found", "message": f"No admin endpoint {request.method} {name}"})


def _echo_input(request: _Request) -> str:
    """The request's input as a careless server quotes it: the member in the path, then every key and
    value of the body, nested ones included ("Quentin, Okonkwo, 42 Juniper St, Ximena Okonkwo (spouse): ...").
    """
    parts: list[str] = [unquote(segment) for segment in request.path.split("/")[3:4] if segment]
    try:
        body: Any = json.loads(request.body) if request.body else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        body = None

    def walk(value: Any, prefix: str) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{prefix}{key}: ")
        elif isinstance(value, list):
            for item in value:
                walk(item, prefix)
        elif value is not None:
            parts.append(f"{prefix}{value}")

    walk(body, "")
    return ", ".join(parts)
