"""Realistic personal data for masking tests: people, and rows that carry them in unexpected places.

The masking audit (issue 21) found names, streets, cities, dates of birth, government ids and card
numbers where the masking did not look: in free text of innocent fields (``created_at: "1990-05-17 by
Jane Doe"``, ``event_id: "refund for Jane Doe, 42 Elm St, card ***1111"``), in object keys
(``"Quentin Doe (spouse)"``) and in the server's messages echoing the input. This module makes such
data from a seeded ``random.Random`` (so the unit, integration and fault-matrix tests share it and a
failure can be replayed) and says, for each person, which pieces must never show in a masked output
(:meth:`Person.pieces`, :func:`leaks`).

The word lists are made of names that are not English words, and the piece checks are whole words,
so that a piece found in an output is a leak and not a coincidence ("Will" or "Park" would be).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any

FIRST_NAMES = (
    "Quentin", "Marisol", "Thaddeus", "Oluwaseun", "Ingeborg", "Leopoldo", "Siobhan", "Bartholomew",
    "Anneliese", "Yevgenia", "Cosimo", "Philippa", "Radomir", "Ximena", "Evander", "Perpetua",
)  # fmt: skip
LAST_NAMES = (
    "Okonkwo", "Vandermeer", "Castellanos", "Wojciechowski", "Abernathy", "Lindqvist", "Baptiste",
    "Fairweather", "Nakamura", "Oyelaran", "Przybylski", "Quartermaine", "Delacroix", "Hargreaves",
)  # fmt: skip
STREET_NAMES = (
    "Juniper", "Sycamore", "Whitcombe", "Larkspur", "Marchbanks", "Quillfeather", "Tamarind", "Ashgrove",
)  # fmt: skip
STREET_KINDS = ("St", "Ave", "Rd", "Ln", "Blvd")
CITIES = ("Springfield", "Kalamazoo", "Ypsilanti", "Tallahassee", "Poughkeepsie", "Schenectady", "Walla Walla")
RELATIONS = ("spouse", "child", "partner")


@dataclass(frozen=True)
class Person:
    """One made-up person, with the pieces of personal data the tests plant."""

    first: str
    last: str
    house: int
    street: str  # "Juniper St"
    city: str
    dob: str  # ISO, "1990-05-17"
    ssn: str  # "123-45-8762"
    card: str  # "4111 2222 3333 4444" (Luhn-valid)
    relative: str  # another first name, used as an object key: "Ximena Okonkwo (spouse)"
    relation: str

    @property
    def full_name(self) -> str:
        """"Quentin Okonkwo"."""
        return f"{self.first} {self.last}"

    @property
    def address(self) -> str:
        """"42 Juniper St"."""
        return f"{self.house} {self.street}"

    @property
    def relative_key(self) -> str:
        """An object key made of a person: "Ximena Okonkwo (spouse)"."""
        return f"{self.relative} {self.last} ({self.relation})"

    def pieces(self) -> list[str]:
        """Every piece that must not show in a masked output (whole words / whole numbers)."""
        street_word = self.street.split()[0]
        return [
            self.first, self.last, self.relative, street_word, *self.city.split(),
            self.dob, self.dob.replace("-", "/"), self.ssn, self.ssn.replace("-", ""),
            self.card, self.card.replace(" ", ""),
        ]  # fmt: skip

    def last_fours(self) -> list[str]:
        """The last four digits of the SSN and the card: they must not survive a mask (``***8762``)."""
        return [self.ssn[-4:], self.card.replace(" ", "")[-4:]]


def _luhn_complete(digits: str) -> str:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 0:  # every second digit from the right, counting the check digit to come
            value *= 2
            value -= 9 if value > 9 else 0
        total += value
    return digits + str((10 - total % 10) % 10)


def person(rng: random.Random) -> Person:
    """A made-up person drawn from the word lists (last fours avoid 19xx/20xx, which look like years)."""
    card = _luhn_complete("4" + "".join(rng.choice("0123456789") for _ in range(14)))
    while card[-4:].startswith(("19", "20")):
        card = _luhn_complete("4" + "".join(rng.choice("0123456789") for _ in range(14)))
    ssn_last = rng.randrange(3000, 9999)
    first = rng.choice(FIRST_NAMES)
    return Person(
        first=first,
        last=rng.choice(LAST_NAMES),
        house=rng.randrange(11, 9800),
        street=f"{rng.choice(STREET_NAMES)} {rng.choice(STREET_KINDS)}",
        city=rng.choice(CITIES),
        dob=f"{rng.randrange(1940, 2005)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}",
        ssn=f"{rng.randrange(100, 899)}-{rng.randrange(10, 99)}-{ssn_last}",
        card=" ".join(card[i : i + 4] for i in range(0, 16, 4)),
        relative=rng.choice([name for name in FIRST_NAMES if name != first]),
        relation=rng.choice(RELATIONS),
    )


def free_text(p: Person, rng: random.Random) -> str:
    """A sentence a warehouse column might hold, full of the person's data."""
    templates = (
        "refund for {name}, {address}, card ***{card4}",
        "{dob} by {name}",
        "{name} ({city}), DOB {dob}, SSN {ssn}",
        "ship to {address}, {city} - card {card}",
        "called {first} about {relative}; lives at {address}",
    )
    return rng.choice(templates).format(
        name=p.full_name, first=p.first, address=p.address, city=p.city, dob=p.dob, ssn=p.ssn, card=p.card,
        card4=p.card[-4:], relative=p.relative,
    )  # fmt: skip


def echo_message(p: Person) -> str:
    """A server message that echoes the input, as the audited server answered."""
    return f"Invalid postal_code for {p.full_name}, {p.address}, {p.city}; DOB {p.dob}, SSN {p.ssn}, card {p.card}"


def odd_record(p: Person, rng: random.Random, *, user_id: str) -> dict[str, Any]:
    """A row with the person's data in places a field-name-based masking misses.

    Free text in allow-listed and innocent fields (``created_at``, ``event_id``, ``note_1``), an SSN in
    a field not named as one (``taxpayer_id``), a card number as a number, a person as an object key,
    at the top level and nested, and the data in lists.
    """
    return {
        "user_id": user_id,
        "created_at": f"{p.dob} by {p.full_name}",
        "event_id": free_text(p, rng),
        "taxpayer_id": p.ssn,
        "loyalty_card": int(p.card.replace(" ", "")),
        "note_1": f"{p.address}, {p.city}",
        p.relative_key: p.relation,
        "household": {f"{p.relative} {p.last}": {"born": p.dob, "city": p.city}},
        "history": [free_text(p, rng), {"by": p.full_name}],
    }


def leaks(text: str, people: list[Person]) -> list[str]:
    """The planted pieces (and masked last fours, ``***8762``) that appear in ``text``."""
    found: list[str] = []
    for p in people:
        for piece in p.pieces():
            if re.search(rf"(?<![\w]){re.escape(piece)}(?![\w])", text):
                found.append(piece)
        for last in p.last_fours():
            if re.search(rf"\*\s?{last}(?!\d)", text):
                found.append(f"***{last}")
    return found
