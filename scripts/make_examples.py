"""Regenerate the sample data in examples/ (deterministic: same output every run).

    .venv/bin/python scripts/make_examples.py
"""

from __future__ import annotations

import json
import random
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

FIRST = ["Ann", "Bo", "Chloé", "Dmitri", "Eve", "Farah", "Gus", "Hana", "Ivan", "José", "Kim", "Lena", "O'Neil"]
LAST = ["Lee", "Park", "Ng", "García", "Smith", "Okafor", "Müller", "Rossi", "Chen", "Dubois"]
TIERS = ["bronze", "silver", "gold"]


def users(rng: random.Random, n: int = 300) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for i in range(n):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        row: dict[str, object] = {
            "user_id": f"member{i:04d}@example.com",
            "first_name": first,
            "last_name": last,
            "postal_code": rng.choice([10010, "94111", "02134", "60601-1234", 7030]),
            "date_of_birth": rng.choice(["1979-11-29", "1990-02-03T10:00:00-05:00", 631152000, 946684800000]),
            "receive_email_updates": rng.choice([True, False, "yes", "no", 1, 0]),
            "mobile_phone_number": f"+1 (212) 555-{i:04d}",
            "tier": rng.choice(TIERS),  # a custom attribute: goes to custom_data
            "_airbyte_raw_id": f"raw-{i}",  # platform metadata: never sent
        }
        if i % 40 == 7:
            row["first_name"] = "<script>"  # name with characters CrowdTwist refuses
        if i % 40 == 13:
            row.pop("postal_code")  # no location: a new member cannot be created
        if i % 40 == 21:
            row["user_id"] = f"not-an-email-{i}"
        if i % 40 == 29:
            row["date_of_birth"] = "sometime in spring"
        if i % 50 == 33:
            row["country_code"] = "ca"
            row["postal_code"] = "k1a0b1"
        rows.append(row)
    return rows


def credits(rng: random.Random, n: int = 120) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for i in range(n):
        row: dict[str, object] = {
            "event_id": f"order-{10000 + i}",
            "user_id": f"member{rng.randrange(0, 40):04d}@example.com",
            "activity_id": rng.choice(["1001", "1002", 1001]),
            "num_points": rng.choice([None, 5, 20, 100]),
            "activity_date": rng.choice(["2026-11-01", "2026-11-02T08:30:00+01:00", 1793000000]),
            "extra_data": {"channel": rng.choice(["web", "store"])},
            "store": "NYC-5",  # not a credit field: ignored, logged once
        }
        if i % 25 == 5:
            rows.append(dict(row))  # the same event twice: credited once
        if i % 30 == 11:
            row["activity_id"] = "9999"  # not an active activity: rejected before any request
        if i % 30 == 17:
            row["user_id"] = "nobody@example.com"  # not a member: rejected by CrowdTwist
        if i % 45 == 20:
            row["num_points"] = "lots"
        rows.append(row)
    return rows


def write_jsonl(path: Path, stream: str, rows: list[dict[str, object]], state_every: int) -> None:
    with path.open("w", encoding="utf-8") as out:
        for i, row in enumerate(rows, 1):
            data = {k: v for k, v in row.items() if v is not None}
            out.write(json.dumps({"type": "RECORD", "record": {"stream": stream, "emitted_at": 0, "data": data}},
                                 ensure_ascii=False) + "\n")
            if i % state_every == 0 or i == len(rows):
                out.write(json.dumps({"type": "STATE", "state": {"type": "STREAM", "id": i, "stream": {
                    "stream_descriptor": {"name": stream}, "stream_state": {"row": i}}}}) + "\n")


def catalog(stream: str, mode: str) -> dict[str, object]:
    return {"streams": [{
        "stream": {"name": stream, "json_schema": {"type": "object"}, "supported_sync_modes": ["full_refresh"]},
        "sync_mode": "full_refresh",
        "destination_sync_mode": mode,
    }]}


def main() -> None:
    EXAMPLES.mkdir(exist_ok=True)
    rng = random.Random(20261128)
    write_jsonl(EXAMPLES / "users.jsonl", "members", users(rng), state_every=100)
    write_jsonl(EXAMPLES / "credits.jsonl", "point_events", credits(rng), state_every=50)
    (EXAMPLES / "catalog_users.json").write_text(json.dumps(catalog("members", "append_dedup"), indent=2) + "\n")
    (EXAMPLES / "catalog_credits.json").write_text(json.dumps(catalog("point_events", "append"), indent=2) + "\n")
    print(f"wrote sample data to {EXAMPLES}")


if __name__ == "__main__":
    main()
