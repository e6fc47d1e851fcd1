"""Whom the emulator answers: its own host names only, and state changes from its own origin.

The emulator runs on developers' machines, where any web page the developer opens can reach
it. Two rules keep such a page out: a request whose ``Host`` is not one the emulator listens
on gets 400, so a name an attacker points at ``127.0.0.1`` (DNS rebinding) reads and
changes nothing; and a request that changes the emulator's state (a click, a postback, a
reset) from a browser page of another origin gets 403, so a cross-site form or ``fetch``
cannot wipe or forge the click log.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from werkzeug.wrappers import Request

from ..bounds import host_name

#: Addresses that mean "every interface": they name no host a request could carry.
WILDCARD_ADDRESSES = frozenset({"", "0.0.0.0", "::"})

#: ``Sec-Fetch-Site`` values of a request that is not from another origin's page.
_OWN_FETCH_SITES = frozenset({"same-origin", "none"})


def host_names(configured: Iterable[str], listen_host: str | None = None) -> frozenset[str]:
    """The host names the emulator answers to besides loopback's, lower case.

    ``configured`` is the config's ``hosts``; ``listen_host`` is the address the server is
    bound to (a wildcard address adds nothing).
    """
    names = {_normal(name) for name in configured}
    if listen_host is not None and listen_host.strip("[]") not in WILDCARD_ADDRESSES:
        names.add(_normal(listen_host))
    return frozenset(names)


def _normal(name: str) -> str:
    """A host name lower case, or an IP address in its one spelling (no brackets)."""
    bare = name.strip().strip("[]").lower().rstrip(".")
    try:
        return str(ipaddress.ip_address(bare))
    except ValueError:
        return bare


def is_known_host(host: str, names: frozenset[str]) -> bool:
    """Whether ``host`` (a ``Host`` header value) names the emulator.

    Loopback names always do: ``localhost`` and its subdomains (browsers resolve them to
    loopback themselves, never through DNS) and loopback addresses (``127.0.0.1``,
    ``[::1]``); besides them only ``names``.
    """
    name = _normal(host_name(host))
    if not name:
        return False
    if name in names or name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def is_cross_site(request: Request) -> bool:
    """Whether ``request`` came from a browser page of another origin.

    A browser names the page's origin in ``Origin`` on every ``POST`` and cross-origin
    ``fetch``, and says where a request comes from in ``Sec-Fetch-Site``; a server-to-server
    call (a site's Click API call, a postback) sends neither.
    """
    origin = request.headers.get("Origin")
    if origin is not None and origin.lower() != f"{request.scheme}://{request.host}".lower():
        return True
    return request.headers.get("Sec-Fetch-Site", "none").lower() not in _OWN_FETCH_SITES
