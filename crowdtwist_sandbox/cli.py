"""``crowdtwist-sandbox``: run the fake CrowdTwist API from the command line until SIGINT/SIGTERM.

Prints ``listening on http://127.0.0.1:PORT`` once ready (and writes the port to ``--port-file``).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from crowdtwist_sandbox.options import (
    DEFAULT_ACTIVITIES,
    DEFAULT_API_KEY,
    EXAMPLE_HMAC_PRIVATE_KEY,
    EXAMPLE_HMAC_PUBLIC_KEY,
    HISTORY_ANSWER_SHAPES,
    LATENCY_DISTRIBUTIONS,
    RATE_LIMIT_ALGORITHMS,
    SandboxOptions,
)
from crowdtwist_sandbox.server import Sandbox


def _activity(spec: str) -> dict[str, Any]:
    """Parse ``ID:TITLE:POINTS[:FREQ_CAP]``."""
    parts = spec.split(":")
    if len(parts) not in (3, 4) or not parts[0]:
        raise argparse.ArgumentTypeError("expected ID:TITLE:POINTS[:FREQ_CAP]")
    try:
        activity: dict[str, Any] = {"id": parts[0], "title": parts[1], "num_points": int(parts[2])}
        if len(parts) == 4 and parts[3]:
            activity["freq_cap"] = int(parts[3])
    except ValueError:
        raise argparse.ArgumentTypeError("POINTS and FREQ_CAP must be integers") from None
    return activity


def _connector_config(base_url: str, options: SandboxOptions) -> dict[str, object]:
    """The destination config that talks to this sandbox (its keys are test keys, not secrets)."""
    credentials: dict[str, object]
    if options.hmac_enabled:
        credentials = {"auth_type": "hmac", "public_key": options.hmac_public_key,
                       "private_key": options.hmac_private_key}
    else:
        credentials = {"auth_type": "api_key", "api_key": options.api_key}
    return {"api_base_url": base_url, "credentials": credentials}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (one flag per `SandboxOptions` knob)."""
    p = argparse.ArgumentParser(
        prog="crowdtwist-sandbox",
        description="Local fake of the Oracle CrowdTwist REST API v2 (listens on 127.0.0.1 only).",
        epilog=(
            "Point the connector at it with api_base_url set to the printed http://127.0.0.1:PORT (plain http "
            "is accepted for loopback only) and credentials {\"auth_type\": \"api_key\", \"api_key\": "
            f"\"{DEFAULT_API_KEY}\"}} (or --api-key). With --hmac, use auth_type hmac with the public and "
            "private keys printed at start-up. Knobs and endpoints: crowdtwist_sandbox/README.md."
        ),
    )
    p.add_argument("--port", type=int, default=0, help="port to listen on (0 = any free port)")
    p.add_argument("--port-file", type=Path, help="write the bound port number to this file")
    p.add_argument("--quiet", action="store_true", help="print nothing but the listening line")

    auth = p.add_argument_group("authentication")
    auth.add_argument("--api-key", default=DEFAULT_API_KEY, help="API key accepted in API-key mode")
    auth.add_argument("--hmac", action="store_true", help="require HMAC signing with the example key pair")
    auth.add_argument("--hmac-public-key", help="require HMAC signing with this public key")
    auth.add_argument("--hmac-private-key", help="private key for --hmac-public-key")
    auth.add_argument("--hmac-accept-seconds", action="store_true", help="also accept 10-digit second timestamps")
    auth.add_argument("--hmac-window-seconds", type=float, default=900.0, help="allowed clock skew (default 900)")

    prog = p.add_argument_group("program setup")
    prog.add_argument("--activity", action="append", type=_activity, default=[], metavar="ID:TITLE:POINTS[:CAP]",
                      help="define an activity (repeatable); replaces the defaults unless --keep-default-activities")
    prog.add_argument("--keep-default-activities", action="store_true", help="keep 1001-1003 alongside --activity")
    prog.add_argument("--custom-attribute", action="append", default=[], metavar="NAME",
                      help="allow this custom_data attribute (repeatable)")
    prog.add_argument("--seed-members", type=Path, metavar="FILE", help="JSON file: a list of member objects")
    prog.add_argument("--lenient-location", action="store_true",
                      help="do not require a location on create (2026-04 release behaviour)")
    prog.add_argument("--echo-input-in-errors", action="store_true",
                      help="validation errors (400) quote the request's input, as some servers do")
    prog.add_argument("--duplicate-detection", action="store_true",
                      help="refuse an identical credit repeated within the window (Event already processed)")
    prog.add_argument("--duplicate-window", type=float, default=2.0, metavar="SECONDS")
    prog.add_argument("--queue-delay-ms", type=float, default=0.0, help="credits show up in history after this")

    faults = p.add_argument_group("fault injection (API endpoints only)")
    faults.add_argument("--latency-ms", type=float, default=0.0)
    faults.add_argument("--latency-distribution", choices=LATENCY_DISTRIBUTIONS, default="fixed")
    faults.add_argument("--latency-spread-ms", type=float, default=0.0, help="uniform half-width or normal sigma")
    faults.add_argument("--rate-limit", type=int, metavar="PER_MINUTE", help="instance limit in requests/minute")
    faults.add_argument("--rate-limit-algorithm", choices=RATE_LIMIT_ALGORITHMS, default="sliding_window")
    faults.add_argument("--rate-limit-burst", type=int, help="token bucket capacity (default: the per-minute limit)")
    faults.add_argument("--no-retry-after", action="store_true", help="429 without a Retry-After header")
    faults.add_argument("--error-rate", type=float, default=0.0, help="fraction of requests answered 500")
    faults.add_argument("--error-after-apply", action="store_true", help="apply the request before the 500")
    faults.add_argument("--maintenance-first-n", type=int, default=0, help="first N requests get the 503 page")
    faults.add_argument("--maintenance-seconds", type=float, default=0.0, help="503 page for N seconds from start")
    faults.add_argument("--drop-rate", type=float, default=0.0,
                        help="fraction of requests processed, then hung up on without a response")
    faults.add_argument("--drop-credits-only", action="store_true", help="only drop activity-credit requests")
    faults.add_argument("--slow-rate", type=float, default=0.0, help="fraction of responses delayed by --slow-ms")
    faults.add_argument("--slow-ms", type=float, default=0.0)
    faults.add_argument("--history-answer-shape", choices=HISTORY_ANSWER_SHAPES, default="paged",
                        help="how activity history answers: paged (v2.1 pages) or a shape that proves nothing")
    faults.add_argument("--history-max-page-size", type=int, default=25, help="largest activity history page served")
    faults.add_argument("--trickle-headers-rate", type=float, default=0.0,
                        help="fraction of answers whose status line and headers go out one byte at a time")
    faults.add_argument("--trickle-headers-interval-ms", type=float, default=1000.0,
                        help="pause between two bytes of a trickled status line and headers")
    faults.add_argument("--seed", type=int, help="seed for reproducible fault sequences")
    faults.add_argument("--refuse-after-latency", action="store_true",
                        help="delay 429 and maintenance 503 answers by --latency-ms like any answer "
                             "(default: answered on arrival, as a gateway in front of the application does)")
    return p


def options_from_args(args: argparse.Namespace) -> SandboxOptions:
    """Turn parsed flags into `SandboxOptions`."""
    public, private = args.hmac_public_key, args.hmac_private_key
    if args.hmac and not public:
        public, private = EXAMPLE_HMAC_PUBLIC_KEY, EXAMPLE_HMAC_PRIVATE_KEY
    activities = tuple(args.activity)
    if not activities or args.keep_default_activities:
        activities = DEFAULT_ACTIVITIES + activities
    members: tuple[dict[str, Any], ...] = ()
    if args.seed_members:
        loaded = json.loads(args.seed_members.read_text(encoding="utf-8"))
        if not isinstance(loaded, list):
            raise ValueError("--seed-members must hold a JSON list of member objects")
        members = tuple(loaded)
    now = time.time()
    return SandboxOptions(
        api_key=args.api_key,
        hmac_public_key=public,
        hmac_private_key=private,
        hmac_accept_seconds=args.hmac_accept_seconds,
        hmac_window_seconds=args.hmac_window_seconds,
        activities=activities,
        members=members,
        custom_attributes=tuple(args.custom_attribute),
        strict_location=not args.lenient_location,
        echo_input_in_errors=args.echo_input_in_errors,
        duplicate_detection=args.duplicate_detection,
        duplicate_window_seconds=args.duplicate_window,
        queue_delay_ms=args.queue_delay_ms,
        latency_ms=args.latency_ms,
        latency_distribution=args.latency_distribution,
        latency_spread_ms=args.latency_spread_ms,
        rate_limit_per_minute=args.rate_limit,
        rate_limit_algorithm=args.rate_limit_algorithm,
        rate_limit_burst=args.rate_limit_burst,
        retry_after=not args.no_retry_after,
        error_rate=args.error_rate,
        error_after_apply=args.error_after_apply,
        maintenance_first_n=args.maintenance_first_n,
        maintenance_window=(now, now + args.maintenance_seconds) if args.maintenance_seconds > 0 else None,
        drop_rate=args.drop_rate,
        drop_credits_only=args.drop_credits_only,
        slow_rate=args.slow_rate,
        slow_ms=args.slow_ms,
        history_answer_shape=args.history_answer_shape,
        history_max_page_size=args.history_max_page_size,
        trickle_headers_rate=args.trickle_headers_rate,
        trickle_headers_interval_ms=args.trickle_headers_interval_ms,
        seed=args.seed,
        refuse_immediately=not args.refuse_after_latency,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Console-script entry point; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        options = options_from_args(args)
    except (ValueError, OSError) as exc:
        parser.error(str(exc))
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    with Sandbox(options, port=args.port) as sandbox:
        if args.port_file:
            args.port_file.write_text(f"{sandbox.port}\n", encoding="utf-8")
        print(f"listening on {sandbox.base_url}", flush=True)
        if not args.quiet:
            print(f"connector config: {json.dumps(_connector_config(sandbox.base_url, options))}",
                  file=sys.stderr, flush=True)
            print(f"admin API: {sandbox.base_url}/__sandbox/ (members, credits, counters, activities, options, "
                  "reset)", file=sys.stderr, flush=True)
        while not stop.wait(0.5):
            pass
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
