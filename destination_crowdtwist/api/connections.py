"""The urllib3 pool manager the transport sends through, set up once as requests set up its session.

requests read its settings from the environment on every request (proxies, ``NO_PROXY``, the CA
bundle); the transport (api/transport.py) sends straight to urllib3, so the same settings are read
here, once, with requests' own functions where it has them: the same proxy for the same URL, the same
trust. Its pools hold the watched connections that the deadline watchdog (api/deadline.py) can cut.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import unquote, urlsplit

import requests.utils
import urllib3
from urllib3.util import make_headers

from destination_crowdtwist.api.deadline import WATCHED_POOLS
from destination_crowdtwist.api.errors import ConfigError
from destination_crowdtwist.api.redaction import redact_url

__all__ = ["pool_manager_for"]


def pool_manager_for(base_url: str, pool_size: int) -> tuple[urllib3.PoolManager, bool]:
    """The pool manager for ``base_url``, set up as requests set up its session; and whether the
    request target must be the absolute URL (a plain-HTTP URL through a proxy).
    """
    # The CA bundle as requests read it: the environment's, else certifi's (not the system store).
    ca_bundle = (os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
                 or requests.utils.DEFAULT_CA_BUNDLE_PATH)
    tls: dict[str, Any] = {"cert_reqs": "CERT_REQUIRED"}
    tls["ca_cert_dir" if os.path.isdir(ca_bundle) else "ca_certs"] = ca_bundle
    # block=False: a burst beyond pool_size opens extra connections instead of waiting (requests' default).
    pool_kw: dict[str, Any] = {"num_pools": 1, "maxsize": pool_size, "block": False, "retries": False, **tls}
    # The proxy for this URL as requests chose it (HTTPS_PROXY, ALL_PROXY, NO_PROXY...), resolved once.
    proxy = requests.utils.select_proxy(base_url, requests.utils.get_environ_proxies(base_url))
    manager: urllib3.PoolManager
    if not proxy:
        manager = urllib3.PoolManager(**pool_kw)
    elif proxy.lower().startswith("socks"):
        raise ConfigError(
            f"The proxy for the API base URL ({redact_url(proxy)}) is a SOCKS proxy, which the connector does "
            "not support: use an HTTP(S) proxy in HTTPS_PROXY, or exclude the host with NO_PROXY."
        )
    else:
        if "://" not in proxy:
            proxy = "http://" + proxy  # requests' prepend_scheme_if_needed
        userinfo = urlsplit(proxy)
        # Proxy credentials in the URL, as requests sent them (percent-decoded, Basic).
        credentials = f"{unquote(userinfo.username or '')}:{unquote(userinfo.password or '')}"
        headers = make_headers(proxy_basic_auth=credentials) if userinfo.username else None
        manager = urllib3.ProxyManager(proxy, proxy_headers=headers, **pool_kw)
    manager.pool_classes_by_scheme = dict(WATCHED_POOLS)
    return manager, bool(proxy) and base_url.lower().startswith("http:")
