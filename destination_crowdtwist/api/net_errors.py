"""What a urllib3 (or socket) exception says, for the transport's failure messages and verdicts.

Both walk the chain urllib3 builds (``reason``, exceptions passed as arguments, ``__cause__`` and
``__context__``): the innermost exception names what went wrong, and a connect-stage error anywhere
in it proves that no request was sent.
"""

from __future__ import annotations

import urllib3.exceptions

__all__ = ["never_connected", "root_cause"]


def root_cause(exc: BaseException) -> str:
    """The innermost exception's class name: informative, and free of URLs (which may hold the api_key)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    name = type(exc).__name__
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        name = type(current).__name__
        reason = getattr(current, "reason", None)
        nxt: BaseException | None = None
        if isinstance(reason, BaseException):
            nxt = reason
        else:
            nxt = next((arg for arg in getattr(current, "args", ()) if isinstance(arg, BaseException)), None)
        current = nxt or current.__cause__ or current.__context__
    return name


def never_connected(exc: BaseException) -> bool:
    """True when the TCP connection was never established (refused, DNS, connect timeout)."""
    current: BaseException | None = exc
    seen: set[int] = set()
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        # urllib3 2: NameResolutionError < NewConnectionError < ConnectTimeoutError.
        if isinstance(current, urllib3.exceptions.ConnectTimeoutError):
            return True
        if isinstance(current, urllib3.exceptions.ProtocolError):
            return False
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException):
            current = reason
            continue
        current = next((arg for arg in getattr(current, "args", ()) if isinstance(arg, BaseException)), None)
    return False

