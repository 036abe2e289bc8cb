"""Render stored members as CrowdTwist profile JSON (docs/crowdtwist-api-notes.md §2.8) and activities (§4).

The key set and order follow the Starter Kit's captured 200 responses; booleans are true/false,
``postal_code`` is a string, dates are epoch seconds. Location is derived server-side from the postal
code or country (a tiny lookup table stands in for CrowdTwist's). A few keys nobody documents are
added on purpose so clients prove they ignore unknown properties.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

# Marker of an unknown key in every JSON object answer (Oracle: new properties may appear any time).
UNKNOWN_KEY = "sandbox_unknown_field"
UNKNOWN_VALUE = "clients must ignore unknown keys"

# Kit: gender_id "2" <-> "Male". The rest of the enum is NOT FOUND; "1" Female is assumed.
_GENDERS = {"1": "Female", "2": "Male"}
# postal code -> (city, state, us_region); the first entry is the Kit's sample.
_US_ZIPS = {
    "94111": ("San Francisco", "CA", "West"),
    "10010": ("New York", "NY", "Northeast"),
    "10001": ("New York", "NY", "Northeast"),
    "60601": ("Chicago", "IL", "Midwest"),
    "73301": ("Austin", "TX", "South"),
    "02110": ("Boston", "MA", "Northeast"),
}
# First letter of a Canadian postal code -> province.
_CA_PROVINCES = {
    "A": "NL", "B": "NS", "C": "PE", "E": "NB", "G": "QC", "H": "QC", "J": "QC", "K": "ON", "L": "ON",
    "M": "ON", "N": "ON", "P": "ON", "R": "MB", "S": "SK", "T": "AB", "V": "BC", "X": "NT", "Y": "YT",
}  # fmt: skip
_COUNTRIES = {
    "US": ("United States", "North America"),
    "CA": ("Canada", "North America"),
    "MX": ("Mexico", "North America"),
    "GB": ("United Kingdom", "Europe"),
    "FR": ("France", "Europe"),
    "DE": ("Germany", "Europe"),
    "ES": ("Spain", "Europe"),
    "IT": ("Italy", "Europe"),
    "JP": ("Japan", "Asia"),
    "AU": ("Australia", "Oceania"),
    "BR": ("Brazil", "South America"),
}

_TIER_INFO: dict[str, Any] = {
    "timeframe_score": 0,
    "tier_score": 0,
    "current_level": {"title": "Member", "min_value": 0, "max_value": 100000000, "image_url": None},
    "next_level": None,
    "levels_above": [],
    "levels_below": [],
    "date_assigned": None,
    "expiration_date": None,
    "reset_date": None,
    "score_needed_to_reach": None,
    "score_needed_to_maintain": None,
    "days_until_expiration_date": None,
    "days_until_reset_date": None,
    "is_maintenance_mode": None,
    "date_reached": None,
    "assigned_by_event": None,
}


def _location(member: Mapping[str, Any]) -> dict[str, Any]:
    postal = member.get("postal_code")
    country_code = member.get("country_code")
    loc: dict[str, Any] = {
        "continent": None, "country": None, "us_region": None, "ca_province": None, "state": None,
        "city": member.get("city_name"),
    }  # fmt: skip
    if postal and not country_code:
        country_code = "US"
        city, state, region = _US_ZIPS.get(postal[:5], (None, None, None))
        loc.update(city=city, state=state, us_region=region)
    elif country_code == "CA" and postal:
        loc["ca_province"] = _CA_PROVINCES.get(postal[:1].upper())
    if country_code:
        country, continent = _COUNTRIES.get(country_code, (country_code, None))
        loc.update(country=country, continent=continent)
    return loc


def _flag(value: Any, *, default: bool) -> bool:
    return default if value is None else bool(value)


def render_profile(member: Mapping[str, Any]) -> dict[str, Any]:
    """The full profile object for one stored member (a fresh, JSON-serialisable dict)."""
    gender_id = member.get("gender_id")
    profile: dict[str, Any] = {
        "id": member["id"],
        "first_name": member.get("first_name"),
        "middle_name": member.get("middle_name"),
        "last_name": member.get("last_name"),
        "date_of_birth": member.get("date_of_birth"),
        "email_address": member.get("email_address"),
        "email_is_verified": _flag(member.get("email_is_verified"), default=True),
        "username": member.get("username"),
        "mobile_phone_number": member.get("mobile_phone_number"),
        "third_party_id": member.get("third_party_id"),
        "is_active": _flag(member.get("is_active"), default=True),
        "gender_id": gender_id,
        "gender": _GENDERS.get(gender_id) if gender_id is not None else None,
        "extra_data": copy.deepcopy(member.get("extra_data")),
        **_location(member),
        "street_address_1": None,
        "street_address_2": None,
        "postal_code": member.get("postal_code"),
        "receive_email_updates": _flag(member.get("receive_email_updates"), default=False),
        "date_receive_email_opt_in": member.get("date_receive_email_opt_in"),
        "date_receive_email_opt_out": member.get("date_receive_email_opt_out"),
        "total_points": member.get("total_points", 0),
        "redeemable_points": member.get("redeemable_points", 0),
        "num_points_purchased": 0,
        "facebook_access_token": member.get("facebook_access_token"),
        "facebook_user_id": member.get("facebook_user_id"),
        "date_fb_token_expires": None,
        "twitter_oauth_token": None,
        "twitter_oauth_token_secret": None,
        "pinterest_access_token": None,
        "pinterest_user_id": None,
        "inst_access_token": member.get("inst_access_token"),
        "inst_username": member.get("inst_username"),
        "inst_user_id": member.get("inst_user_id"),
        "activity_stream_opt_in": True,
        "store_id": member.get("store_id"),
        "date_last_login": None,
        "date_last_updated": member.get("date_last_updated"),
        "date_created": member.get("date_created"),
        "rank": None,
        "weekly_rank": None,
        "monthly_rank": None,
        "password": None,
        "salt": None,
        "hash_algorithm_id": "5",
        "password_generated": "0",
        "lang_pref": member.get("lang_pref"),
        "sign_up_channel_id": member.get("sign_up_channel_id"),
        "referral_url": f"https://sandbox.crowdtwist.invalid/?_cts_=m{member['id']}",
        "fan_level": "Member",
        "tier_info": copy.deepcopy(_TIER_INFO),
        "segments": [],
        "household_id": None,
    }
    if member.get("custom_data"):
        profile["custom_data"] = dict(member["custom_data"])
    # Not in §2.8: the raw location inputs, so a dry-run diff can compare what it sends (simulator extra).
    profile["country_code"] = member.get("country_code")
    profile["city_id"] = member.get("city_id")
    profile[UNKNOWN_KEY] = UNKNOWN_VALUE
    return profile


def make_activity(
    id: str,  # mirrors the API field name
    title: str | None = None,
    num_points: int = 10,
    freq_cap: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A stored activity definition with every §4 field (``freq_cap`` = max awards per member)."""
    activity: dict[str, Any] = {
        "id": str(id),
        "title": title if title is not None else f"Activity {id}",
        "description": extra.pop("description", None),
        "num_points": int(num_points),
        "image": extra.pop("image", None),
        "category_id": extra.pop("category_id", None),
        "type_id": extra.pop("type_id", "7"),  # 7 = "Your Site"
        "extra_data": extra.pop("extra_data", None),
        "date_start": extra.pop("date_start", None),
        "date_end": extra.pop("date_end", None),
        "min_tier_id": extra.pop("min_tier_id", None),
        "show_as_locked_by_tier": extra.pop("show_as_locked_by_tier", False),
        "freq_cap": freq_cap,
    }
    activity.update(extra)
    return activity


def render_activity(activity: Mapping[str, Any]) -> dict[str, Any]:
    """An activity as ``GET /v2/activities`` lists it (plus an unknown key)."""
    item = copy.deepcopy(dict(activity))
    item[UNKNOWN_KEY] = UNKNOWN_VALUE
    return item
