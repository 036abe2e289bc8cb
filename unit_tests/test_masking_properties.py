"""Property tests of PII masking: no generated email or phone number survives, wherever it is put.

Records are drawn with random field names (random words, known personal, secret and allow-listed
names, and emails or phone numbers used as keys), nested objects and lists, and values drawn from
emails, phone numbers (also as integers and percent-encoded) and free text containing them. The
check is on the serialised result, as the rejected-records file writes it.

Generated text uses disjoint alphabets so that a survivor cannot be a coincidence: filler words and
random field names are upper case letters, email local parts and hosts are lower case with a digit
(known field names have no digit but after "_"), and only phone numbers (and masks of them)
contain digit runs.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from destination_crowdtwist.records.masking import HARMLESS_FIELDS, PII_FIELDS, mask_record, mask_text
from destination_crowdtwist.records.rejection import Reason, Rejection, key, server, value
from tests_support.pii import Person, echo_message, free_text, leaks, odd_record, person

SETTINGS = settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

LOWER = "abcdefghijklmnopqrstuvwxyz"
UPPER = LOWER.upper()
DIGITS = "0123456789"
TLDS = ["com", "org", "net", "io", "uk", "de"]
KNOWN_NAMES = [
    *sorted(PII_FIELDS | HARMLESS_FIELDS),
    "notes", "telephone", "home_phone", "work_email", "emailAddress", "ssn", "street", "api_key",
    "_airbyte_meta", "_airbyte_data", "custom_data", "extra_data", "ActivityId", "EVENT_ID",
]  # fmt: skip
JOINERS = [" ", ", ", "; ", " (", ") ", "\n", " <", "> ", ": ", " / "]


@dataclass
class Planted:
    """The personal values put into one example: what must not come out."""

    locals_: list[str] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)
    phone_digits: list[str] = field(default_factory=list)


def _local_part(draw: st.DrawFn) -> str:
    # Always a digit, never "_": so that it cannot be a piece of a known field name such as
    # "street_address_1" that legitimately stays in the output.
    head = draw(st.sampled_from(LOWER))
    middle = draw(st.text(LOWER + DIGITS + "._+", min_size=1, max_size=8))
    return head + middle + draw(st.sampled_from(DIGITS)) + draw(st.text(LOWER + DIGITS, max_size=3))


def _host(draw: st.DrawFn) -> str:
    # A letter and a digit, for the same reason (a digit-only host could be a piece of a phone mask).
    return draw(st.text(LOWER, min_size=2, max_size=8)) + draw(st.text(DIGITS, min_size=1, max_size=2))


def _email(draw: st.DrawFn, planted: Planted) -> str:
    local = _local_part(draw)
    hosts = [_host(draw) for _ in range(draw(st.integers(1, 2)))]
    email = f"{local}@{'.'.join(hosts)}.{draw(st.sampled_from(TLDS))}"
    planted.locals_.append(local)
    planted.hosts.extend(hosts)
    encoding = draw(st.sampled_from(["plain", "plain", "quoted", "quoted_twice"]))
    if encoding == "quoted":
        return quote(email, safe="")
    if encoding == "quoted_twice":
        return quote(quote(email, safe=""), safe="")
    return email


def _phone(draw: st.DrawFn, planted: Planted) -> str:
    def digits(n: int) -> str:
        return draw(st.text(DIGITS, min_size=n, max_size=n))

    shape = draw(st.sampled_from(["plain", "nanp", "international"]))
    if shape == "plain":
        phone = draw(st.text(DIGITS, min_size=7, max_size=15))
    elif shape == "nanp":
        a, b, c = digits(3), digits(3), digits(4)
        template = draw(
            st.sampled_from(
                ["{a}-{b}-{c}", "({a}) {b}-{c}", "{a}.{b}.{c}", "+1 {a} {b} {c}", "+1{a}{b}{c}", "1-{a}-{b}-{c}"]
            )
        )
        phone = template.format(a=a, b=b, c=c)
    else:
        country = draw(st.text(DIGITS, min_size=1, max_size=3))
        groups = draw(st.lists(st.text(DIGITS, min_size=2, max_size=4), min_size=3, max_size=5))
        sep = draw(st.sampled_from([" ", "-", ".", "\u00a0"]))
        phone = f"+{country} " + sep.join(groups)
    planted.phone_digits.append(re.sub(r"\D", "", phone))
    return quote(phone, safe="") if draw(st.booleans()) and shape != "plain" else phone


def _free_text(draw: st.DrawFn, planted: Planted) -> str:
    parts = []
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["word", "word", "email", "phone"]))
        if kind == "email":
            parts.append(_email(draw, planted))
        elif kind == "phone":
            parts.append(_phone(draw, planted))
        else:
            parts.append(draw(st.text(UPPER, min_size=1, max_size=8)))
    text = parts[0]
    for part in parts[1:]:
        text += draw(st.sampled_from(JOINERS)) + part
    return text


def _leaf(draw: st.DrawFn, planted: Planted) -> Any:
    kind = draw(st.sampled_from(["email", "phone", "phone_int", "text", "text", "other"]))
    if kind == "email":
        return _email(draw, planted)
    if kind == "phone":
        return _phone(draw, planted)
    if kind == "phone_int":
        number = draw(st.integers(1_000_000, 999_999_999_999_999))
        planted.phone_digits.append(str(number))
        return number
    if kind == "text":
        return _free_text(draw, planted)
    return draw(st.one_of(st.none(), st.booleans(), st.integers(-999_999, 999_999), st.text(UPPER, max_size=5)))


def _key(draw: st.DrawFn, planted: Planted) -> str:
    kind = draw(st.sampled_from(["known", "known", "random", "random", "email", "phone"]))
    if kind == "known":
        return draw(st.sampled_from(KNOWN_NAMES))
    if kind == "email":
        return _email(draw, planted)
    if kind == "phone":
        return _phone(draw, planted)
    return draw(st.text(UPPER + "_", min_size=1, max_size=12))


def _node(draw: st.DrawFn, planted: Planted, depth: int) -> Any:
    kind = draw(st.sampled_from(["leaf", "leaf", "leaf", "object", "list"] if depth < 3 else ["leaf"]))
    if kind == "object":
        return _object(draw, planted, depth + 1)
    if kind == "list":
        return [_node(draw, planted, depth + 1) for _ in range(draw(st.integers(0, 3)))]
    return _leaf(draw, planted)


def _object(draw: st.DrawFn, planted: Planted, depth: int) -> dict[str, Any]:
    return {_key(draw, planted): _node(draw, planted, depth) for _ in range(draw(st.integers(1, 4)))}


@st.composite
def records(draw: st.DrawFn) -> tuple[dict[str, Any], Planted]:
    planted = Planted()
    return _object(draw, planted, 0), planted


@st.composite
def texts(draw: st.DrawFn) -> tuple[str, Planted]:
    planted = Planted()
    return _free_text(draw, planted), planted


# A digit run as a phone is written or encoded; an independent, deliberately looser notion than
# the module's (any of these characters may join digits, in any number).
_RUN_RE = re.compile(r"[\d\s().+\-/:%]+")


def assert_nothing_planted_survives(output: str, planted: Planted) -> None:
    views = [output, unquote(output), unquote(unquote(output))]
    for view in views:
        for local in planted.locals_:
            assert local not in view, f"email local part {local!r} survived in {output!r}"
        for host in planted.hosts:
            assert host not in view, f"email domain {host!r} survived in {output!r}"
        for run in _RUN_RE.findall(view):
            digits = re.sub(r"\D", "", run)
            assert len(digits) < 7, f"digit run {run!r} survived in {output!r}"
            for phone in planted.phone_digits:
                assert phone not in digits


@SETTINGS
@given(records())
def test_mask_record_lets_no_email_or_phone_through(case: tuple[dict[str, Any], Planted]) -> None:
    record, planted = case
    # As the rejected-records file writes it (ensure_ascii=False keeps the check on real characters).
    assert_nothing_planted_survives(json.dumps(mask_record(record), ensure_ascii=False), planted)


@SETTINGS
@given(texts())
def test_mask_text_lets_no_email_or_phone_through(case: tuple[str, Planted]) -> None:
    text, planted = case
    masked = mask_text(text)
    assert_nothing_planted_survives(masked, planted)
    assert mask_text(masked) == masked  # idempotent


def test_the_property_check_can_fail() -> None:
    planted = Planted(locals_=["alice"], hosts=["example"], phone_digits=["2125551234"])
    for leak in ["alice", "example", "212-555-1234", "212%20555%201234", "***1234 5551"]:
        try:
            assert_nothing_planted_survives(f'{{"x": "{leak}"}}', planted)
        except AssertionError:
            continue
        raise AssertionError(f"{leak!r} was not caught")


# -- issue 21: realistic personal data (names, streets, cities, DOBs, SSNs, cards) in odd places --------

SCHEMA_NAMES = ["created_at", "event_id", "activity_id", "notes", "taxpayer_id", "household", "history",
                "custom_data", "extra_data", "loyalty_tier", "first_name", "street", "_airbyte_meta"]  # fmt: skip


def _pii_leaf(draw: st.DrawFn, p: Person, rng: random.Random) -> Any:
    kind = draw(st.sampled_from(["free", "name", "address", "city", "dob", "ssn", "card", "card_int", "echo"]))
    return {
        "free": lambda: free_text(p, rng),
        "name": lambda: p.full_name,
        "address": lambda: p.address,
        "city": lambda: p.city,
        "dob": lambda: p.dob,
        "ssn": lambda: p.ssn,
        "card": lambda: p.card,
        "card_int": lambda: int(p.card.replace(" ", "")),
        "echo": lambda: echo_message(p),
    }[kind]()


def _pii_key(draw: st.DrawFn, p: Person) -> str:
    kind = draw(st.sampled_from(["schema", "schema", "relative", "name", "address", "dob", "city"]))
    return {
        "schema": lambda: draw(st.sampled_from(SCHEMA_NAMES)),
        "relative": lambda: p.relative_key,
        "name": lambda: p.first,
        "address": lambda: p.address,
        "dob": lambda: p.dob,
        "city": lambda: p.city,
    }[kind]()


def _pii_node(draw: st.DrawFn, p: Person, rng: random.Random, depth: int) -> Any:
    kind = draw(st.sampled_from(["leaf", "leaf", "object", "list"] if depth < 3 else ["leaf"]))
    if kind == "object":
        return {_pii_key(draw, p): _pii_node(draw, p, rng, depth + 1) for _ in range(draw(st.integers(1, 3)))}
    if kind == "list":
        return [_pii_node(draw, p, rng, depth + 1) for _ in range(draw(st.integers(1, 3)))]
    return _pii_leaf(draw, p, rng)


@st.composite
def people_records(draw: st.DrawFn) -> tuple[dict[str, Any], Person]:
    rng = random.Random(draw(st.integers(0, 2**32)))
    p = person(rng)
    record = odd_record(p, rng, user_id="member-1@example.com")
    for _ in range(draw(st.integers(1, 4))):
        record[_pii_key(draw, p)] = _pii_node(draw, p, rng, 1)
    return record, p


@SETTINGS
@given(people_records())
def test_mask_record_lets_no_realistic_personal_data_through(case: tuple[dict[str, Any], Person]) -> None:
    record, p = case
    out = json.dumps(mask_record(record), ensure_ascii=False)
    assert leaks(out, [p]) == [], out


@SETTINGS
@given(st.integers(0, 2**32), st.sampled_from([Reason.VALIDATION, Reason.LOCATION, Reason.CUSTOM_ATTRIBUTE]))
def test_echoing_server_messages_and_quoted_row_text_let_nothing_through(seed: int, reason: Reason) -> None:
    rng = random.Random(seed)
    p = person(rng)
    guidance = " — postal_code must be a US ZIP code (5 digits, or ZIP+4 as 12345-6789)"
    rejection = Rejection(reason, (
        "custom field(s) ", key(p.relative_key), ", activity_id ", value(free_text(p, rng), "activity_id"), ": ",
        server(f"{echo_message(p)}; {free_text(p, rng)}"), guidance,
    ))  # fmt: skip
    masked = rejection.text(masked=True)
    assert leaks(masked, [p]) == [], masked
    assert masked.endswith(guidance)  # the connector's guidance stays readable
    assert leaks(rejection.text(masked=False), [p])  # the unmasked text did carry the data


def test_the_realistic_pii_check_can_fail() -> None:
    p = person(random.Random(7))
    for leak in [p.first, p.last, p.city, p.dob, p.ssn, p.card, p.card.replace(" ", ""), p.street.split()[0],
                 f"***{p.ssn[-4:]}", f"card ***{p.card[-4:]}"]:
        assert leaks(f'{{"x": "{leak}"}}', [p]), leak
