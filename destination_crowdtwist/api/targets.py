"""Request targets as the client builds them: a member's path segment and the query string.

The query string is encoded as requests encoded ``params`` (None values left out, the rest
form-encoded, lists repeating the key); the same few text parameters come with almost every request
(``id_type=email``), so their encoding is kept.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode

__all__ = ["query_string", "user_path"]


def query_string(params: Mapping[str, Any]) -> str:
    """``?`` and the parameters as requests encoded them: None values left out, the rest form-encoded
    (lists repeat the key); "" when none is left.
    """
    items = tuple(params.items())
    if all(type(key) is str and type(value) is str for key, value in items):
        # Most requests carry the same few text parameters (id_type=email): encoded once per distinct
        # set. Only str: equal keys of other types (1, 1.0, True) would share an entry and encode apart.
        return _encoded_query(items)
    return _encode_query(items)


def _encode_query(items: tuple[tuple[str, Any], ...]) -> str:
    sent = {key: value for key, value in items if value is not None}
    return f"?{urlencode(sent, doseq=True)}" if sent else ""


_encoded_query = functools.lru_cache(maxsize=256)(_encode_query)


def user_path(user_id: str) -> str:
    """``/v2/users/{user_id}`` with the id as one percent-encoded path segment."""
    # safe="": "/" "@" "+" and the like in an id must not change the path structure.
    return "/v2/users/" + quote(str(user_id), safe="")
