"""One attempt through a urllib3 connection pool without ``urlopen``'s per-request work.

``HTTPConnectionPool.urlopen`` is urllib3's general entry point: on every call it re-parses and
re-encodes the URL (``_encode_target``: a tenth of the connector's CPU per request at zero latency,
docs/performance.md), builds a ``Retry`` from ``retries=False``, copies the headers to merge the
proxy's, clones the timeout, checks the host and looks for a file body to rewind, all to serve
options the transport never uses: it always sends a relative target it has already percent-encoded
(and signed: re-encoding would break the HMAC, so sending it untouched is also the safer choice),
bytes or no body, no retries, no redirects, a streamed answer.

:func:`send` is ``urlopen`` for exactly that call, built from the same pool's own steps, so that
everything the pool does per connection is unchanged: the connection is taken from the pool's
queue (a kept-alive connection the server dropped is detected and replaced there), a CONNECT
tunnel through a proxy is set up on a new connection, ``_make_request`` connects (TLS with the
pool's verification, CA bundle and SNI), sends, swallows a broken pipe after the request went out
(the answer may still be readable) and turns socket timeouts into urllib3's timeout errors. A
failure closes the connection and gives the pool an empty slot, never the broken connection, and
raises what ``urlopen(retries=False)`` raises (urllib3 re-raises the error it wrapped), so the
transport classifies the same exceptions as before. The answer holds its connection until
``release_conn`` (it is streamed under the size cap and the attempt deadline).

A plain-HTTP URL through a proxy needs the absolute URL and the proxy manager: that case keeps
``urlopen`` (api/transport.py).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from http.client import HTTPException

import urllib3
from urllib3.connection import BaseSSLError
from urllib3.connectionpool import HTTPConnectionPool
from urllib3.exceptions import NewConnectionError, ProtocolError, ProxyError, SSLError
from urllib3.util.proxy import connection_requires_http_tunnel
from urllib3.util.ssl_match_hostname import CertificateError
from urllib3.util.timeout import Timeout

try:
    from urllib3.connectionpool import _wrap_proxy_error
except ImportError:  # a urllib3 whose internals moved: USABLE is False, the transport keeps urlopen
    _wrap_proxy_error = None  # type: ignore[assignment]

__all__ = ["NO_RETRY", "USABLE", "send"]


def _usable() -> bool:
    """Whether this urllib3 has the pool internals :func:`send` is built from, as urllib3 2 has them.

    They are private: a release that changes them must make the connector fall back to ``urlopen``
    (slower, the same behaviour), never break a sync. Checked once, at import.
    """
    steps = ("_get_conn", "_put_conn", "_make_request", "_prepare_proxy", "_raise_timeout")
    if _wrap_proxy_error is None or not all(callable(getattr(HTTPConnectionPool, s, None)) for s in steps):
        return False
    try:
        params = inspect.signature(HTTPConnectionPool._make_request).parameters
    except (TypeError, ValueError):
        return False
    return {"conn", "method", "url", "body", "headers", "retries", "timeout", "chunked", "response_conn",
            "preload_content", "decode_content"} <= set(params)


#: Whether :func:`send` may be used with the installed urllib3 (else the transport calls ``urlopen``).
USABLE = _usable()

# What urlopen builds from retries=False, redirect=False on every call: no retry, errors raised raw,
# a redirect returned as the answer. Retry objects are never changed (increment returns a new one).
NO_RETRY = urllib3.Retry(total=False, redirect=False)

# The exceptions after which urlopen drops the connection (urllib3 2's list, in its order).
_DROPPING = (TimeoutError, HTTPException, OSError, ProtocolError, BaseSSLError, SSLError, CertificateError,
             ProxyError)


def send(
    pool: HTTPConnectionPool, method: str, target: str, body: bytes | None, headers: Mapping[str, str],
    timeout: Timeout,
) -> urllib3.BaseHTTPResponse:
    """``pool.urlopen(method, target, body=body, headers=headers, retries=False, redirect=False,
    timeout=timeout, preload_content=False, decode_content=True)``, without its per-request work.

    ``target`` is the path and query after the pool's origin, percent-encoded (sent as is). The
    answer is streamed and keeps its connection until ``release_conn()``.
    """
    if not target.startswith("/"):
        raise ValueError("send() takes a relative target; an absolute URL goes through urlopen")
    # A relative target has no scheme of its own: urlopen asks the same question with None.
    tunnel = connection_requires_http_tunnel(pool.proxy, pool.proxy_config, None)
    if not tunnel and pool.proxy_headers:
        headers = {**headers, **pool.proxy_headers}
    conn = pool._get_conn()
    clean_exit = False
    try:
        conn.timeout = timeout.connect_timeout  # type: ignore[assignment]
        if pool.proxy is not None and tunnel and conn.is_closed:
            # A new connection through a proxy: the CONNECT tunnel first (urlopen's own step).
            try:
                pool._prepare_proxy(conn)
            except (BaseSSLError, OSError, TimeoutError) as exc:
                pool._raise_timeout(err=exc, url=pool.proxy.url, timeout_value=conn.timeout)
                raise
        response = pool._make_request(
            conn, method, target, body=body, headers=headers, retries=NO_RETRY, timeout=timeout,
            chunked=False, response_conn=conn, preload_content=False, decode_content=True,
        )
    except _DROPPING as exc:
        # urlopen's own wrapping; with retries off it re-raises the wrapped error.
        error: Exception = exc
        if isinstance(exc, BaseSSLError | CertificateError):
            error = SSLError(exc)
        if (isinstance(error, OSError | NewConnectionError | TimeoutError | SSLError | HTTPException)
                and conn.proxy and not conn.has_connected_to_proxy):
            error = _wrap_proxy_error(error, conn.proxy.scheme)
        elif isinstance(error, OSError | HTTPException):
            error = ProtocolError("Connection aborted.", error)
        raise error  # noqa: B904 - raised as urlopen raises it: the original is its context
    else:
        clean_exit = True
        return response
    finally:
        if not clean_exit:
            # Never back into the pool half-used: an empty slot, which the pool fills with a new connection.
            conn.close()
            pool._put_conn(None)
