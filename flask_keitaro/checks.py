"""What ``flask keitaro check`` looks at: the app's config and campaign routes, one check each.

A check is a function of a :class:`Site` that returns what it found wrong, as
:class:`Finding` objects; :data:`CHECKS` lists the checks in the order they run. A new check
is one more function in that list.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from .config import KeitaroConfig, key_name
from .errors import token_hint
from .forwarding import is_private_name
from .pipeline import PerRequest, Route

#: The attribute of a :func:`~flask_keitaro.token_from_config` callable naming its config key.
TOKEN_CONFIG_KEY = "config_key"


def token_config_key(token: PerRequest) -> str | None:
    """The config key a campaign token is read from (``None``: not ``token_from_config``)."""
    key = getattr(token, TOKEN_CONFIG_KEY, None)
    return key if isinstance(key, str) else None


@dataclass(frozen=True)
class CampaignRoute:
    """A view decorated with :func:`~flask_keitaro.keitaro_campaign`, as the app routes it."""

    #: The view's endpoint (``"landing"``, ``"shop.promo"``).
    endpoint: str
    #: The URL rules that lead to it (``"/"``, ``"/go/<name>"``).
    rules: tuple[str, ...]
    #: The decorator's route: its campaign token and options.
    route: Route

    @property
    def name(self) -> str:
        """The endpoint and its rules, as messages name the route."""
        return f"{self.endpoint} ({', '.join(self.rules) or 'no URL rule'})"

    @property
    def token_source(self) -> str:
        """Where the route's campaign token comes from, the token itself masked."""
        token = self.route.token
        key = token_config_key(token)
        if key is not None:
            return f"token from config {key}"
        if callable(token):
            return f"token from {getattr(token, '__qualname__', 'a callable')}"
        return f"token ...{token_hint(token)}"


@dataclass(frozen=True)
class Site:
    """What the checks look at: one app's validated config and campaign routes."""

    config: KeitaroConfig
    #: The app's whole config (``app.config``): the keys ``token_from_config`` reads.
    app_config: Mapping[str, Any]
    routes: tuple[CampaignRoute, ...]
    #: The app's session cookie name, which the tracker may never set nor read.
    session_cookie: str = "session"


@dataclass(frozen=True)
class Finding:
    """One thing a check found: an ``error`` (the command exits 1) or a ``warning``."""

    level: Literal["error", "warning"]
    text: str

    @classmethod
    def error(cls, text: str) -> Finding:
        """Something that keeps visitors from being clicked as the site means them to be."""
        return cls("error", text)

    @classmethod
    def warning(cls, text: str) -> Finding:
        """A setting that works as documented, but whose cost the site should know."""
        return cls("warning", text)


Check = Callable[[Site], Iterable[Finding]]


def check_enabled(site: Site) -> Iterable[Finding]:
    """``KEITARO_ENABLED`` off: no visitor is clicked."""
    if not site.config.enabled:
        yield Finding.warning(f"{key_name('enabled')} is False: no visitor is clicked")


def check_routes(site: Site) -> Iterable[Finding]:
    """Each campaign route has a token: a ``token_from_config`` key set to a string."""
    if not site.routes:
        yield Finding.warning("no view is decorated with @keitaro_campaign: nothing is clicked")
    for campaign in site.routes:
        key = token_config_key(campaign.route.token)
        if key is None:
            continue
        value = site.app_config.get(key)
        if value is None or value == "":
            yield Finding.error(
                f"route {campaign.name}: its campaign token's config key {key} is not set,"
                " so its visitors are not clicked"
            )
        elif not isinstance(value, str):
            yield Finding.error(
                f"route {campaign.name}: config key {key} holds a {type(value).__name__},"
                " not a campaign token string"
            )


def check_state(site: Site) -> Iterable[Finding]:
    """No ``SECRET_KEY``: no click state, so returning visitors are clicked again."""
    if site.config.restore and site.config.enabled and not site.app_config.get("SECRET_KEY"):
        yield Finding.warning(
            "SECRET_KEY is not set: the click state cookie is off, so returning visitors are"
            " clicked again"
        )


def check_prefetch(site: Site) -> Iterable[Finding]:
    """``KEITARO_PREFETCH = "skip"``: anyone can claim to be a prefetch."""
    if site.config.prefetch == "skip":
        yield Finding.warning(
            f'{key_name("prefetch")} is "skip": any client can claim to be a prefetch'
            " (Sec-Purpose: prefetch) and see the landing with no tracker call, past the"
            " campaign's bot filters"
        )


def check_private_cookies(site: Site) -> Iterable[Finding]:
    """The cookie settings agree with the private-data rule."""
    config = site.config
    own = {site.session_cookie: "the session cookie", config.state_cookie: "the state cookie"}
    private = {name.lower() for name in config.private_cookies}
    forward_key, private_key = key_name("forward_cookies"), key_name("private_cookies")
    for name in config.forward_cookies:
        if name in own:
            yield Finding.error(f"{forward_key} names {own[name]} {name}, which never leaves")
        elif name.lower() in private:
            yield Finding.error(
                f"{forward_key} names {name}, which {private_key} keeps back: it is never forwarded"
            )
        elif not is_private_name(name):
            yield Finding.warning(
                f"{forward_key} names {name}, which the private-data rule forwards anyway"
            )
    uniqueness = config.uniqueness_cookie
    if uniqueness in own:
        yield Finding.error(f"{key_name('uniqueness_cookie')} is {own[uniqueness]} {uniqueness}")
    elif uniqueness.lower() in private or is_private_name(uniqueness):
        yield Finding.error(
            f"{key_name('uniqueness_cookie')} {uniqueness} is a private name: the tracker's"
            " uniqueness cookie would never be forwarded, and every visit would look new"
        )


#: The checks ``flask keitaro check`` runs, in this order.
CHECKS: list[Check] = [
    check_enabled,
    check_routes,
    check_state,
    check_prefetch,
    check_private_cookies,
]


def run_checks(site: Site, checks: Iterable[Check] | None = None) -> list[Finding]:
    """Every finding of ``checks`` (by default :data:`CHECKS`) on ``site``, in order."""
    return [finding for check in (CHECKS if checks is None else checks) for finding in check(site)]
