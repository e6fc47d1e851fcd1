"""What ``flask keitaro check`` looks at: the app's config and campaign routes, one check each.

A check is a function of a :class:`Site` that returns what it found wrong, as
:class:`Finding` objects; :data:`CHECKS` lists the checks in the order they run. A new check
is one more function in that list.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import requests

from .config import MAX_ID, KeitaroConfig, key_name
from .errors import token_digest, token_hint
from .forwarding import is_private_name
from .route import PerRequest, Route

#: The attribute of a :func:`~flask_keitaro.token_from_config` callable naming its config key.
TOKEN_CONFIG_KEY = "config_key"


def token_config_key(token: PerRequest) -> str | None:
    """The config key a campaign token is read from (``None``: not ``token_from_config``)."""
    key = getattr(token, TOKEN_CONFIG_KEY, None)
    return key if isinstance(key, str) else None


def token_config_problem(value: object) -> str | None:
    """What is wrong with ``value``, read from a ``token_from_config`` key (``None``: nothing).

    Missing, blank and not a string are all mistakes: a site switches clicks off with
    ``KEITARO_ENABLED``, never by emptying a token.
    """
    if value is None:
        return "is not set"
    if not isinstance(value, str):
        return f"holds a {type(value).__name__}, not a campaign token string"
    if not value.strip():
        return "is empty"
    return None


def wrong_order(endpoint: str) -> str:
    """What is said of a view routed without the campaign it was decorated with."""
    return (
        f"(endpoint {endpoint!r}) is routed without its @keitaro_campaign, so no visitor of it"
        " is clicked: the decorators are in the wrong order. Put @app.route(...) (or"
        " @blueprint.route(...)) on top and @keitaro_campaign(...) below it"
    )


def secret_key_finding(config: KeitaroConfig, has_key: bool, name: str) -> Finding | None:
    """The warning when the state cookie has no key (``name``: the setting that gives one)."""
    if has_key or not (config.restore and config.enabled):
        return None
    return Finding.warning(
        f"{name} is not set: the Keitaro click state cookie is off, so returning visitors are"
        " clicked again"
    )


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
    #: Endpoints routed to a view as it was before a campaign wrapped it -> the view's name.
    misordered: Mapping[str, str] = field(default_factory=dict)


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
        problem = token_config_problem(site.app_config.get(key))
        if problem is not None:
            yield Finding.error(
                f"route {campaign.name}: its campaign token's config key {key} {problem},"
                " so its visitors are not clicked"
            )


def check_view_order(site: Site) -> Iterable[Finding]:
    """No view is routed as it was before a campaign wrapped it (decorators in the wrong order)."""
    for endpoint, view in site.misordered.items():
        yield Finding.error(f"view {view} {wrong_order(endpoint)}")


def check_state(site: Site) -> Iterable[Finding]:
    """No ``SECRET_KEY``: no click state, so returning visitors are clicked again."""
    finding = secret_key_finding(site.config, bool(site.app_config.get("SECRET_KEY")), "SECRET_KEY")
    if finding is not None:
        yield finding


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


#: Where the local emulator lists its campaigns and their streams' landings.
EMULATOR_CAMPAIGNS = "/emulator/campaigns.json"

#: The most of the emulator's campaign list read: a campaigns file is a few kilobytes.
MAX_CAMPAIGNS_BYTES = 1024 * 1024


@dataclass(frozen=True)
class TrackerLandings:
    """One campaign's landings on the emulator: its id, name and landing ids."""

    campaign_id: int
    name: str
    #: The ``local`` landings (the site's own pages) of all its streams.
    local: frozenset[int]
    #: The landings the tracker redirects to: never shown by the site.
    remote: frozenset[int]


def emulator_campaigns(config: KeitaroConfig) -> dict[str, TrackerLandings] | str:
    """The emulator's campaigns by their token's SHA-256, or why they cannot be read.

    A real tracker has no such list: the Click API cannot tell a campaign's landings. The
    answer is read bounded and checked by type, as everything from a tracker is.
    """
    url = config.tracker_url + EMULATOR_CAMPAIGNS
    try:
        with requests.get(
            url,
            timeout=config.timeout,
            verify=config.verify_ssl,
            allow_redirects=False,
            stream=True,
        ) as response:
            body = b""
            for chunk in response.iter_content(64 * 1024):
                body += chunk
                if len(body) > MAX_CAMPAIGNS_BYTES:
                    break
            status = response.status_code
    except requests.RequestException as exc:
        return f"the tracker could not be reached ({type(exc).__name__})"
    if status != 200 or len(body) > MAX_CAMPAIGNS_BYTES:
        return "the tracker is not the local emulator, and the Click API lists no landings"
    try:
        return _read_campaigns(json.loads(body))
    except (ValueError, TypeError, KeyError, RecursionError):
        return "the tracker is not the local emulator, and the Click API lists no landings"


def _landing_id(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_ID:
        raise ValueError("not a landing id")
    return value


def _read_campaigns(data: object) -> dict[str, TrackerLandings]:
    if not isinstance(data, dict) or not isinstance(data["campaigns"], list):
        raise ValueError("not a campaign list")
    found = {}
    for campaign in data["campaigns"]:
        local: set[int] = set()
        remote: set[int] = set()
        for stream in campaign["streams"]:
            for landing in stream["landings"]:
                (local if landing["local"] is True else remote).add(_landing_id(landing["id"]))
        digest, name = campaign["token_sha256"], campaign["name"]
        if not isinstance(digest, str) or not isinstance(name, str):
            raise ValueError("not a campaign")
        found[digest] = TrackerLandings(
            _landing_id(campaign["id"]), name, frozenset(local), frozenset(remote)
        )
    return found


def _route_token(campaign: CampaignRoute, site: Site) -> str | None:
    """The route's campaign token when it is known without a request."""
    token = campaign.route.token
    key = token_config_key(token)
    if key is not None:
        value = site.app_config.get(key)
        return value if isinstance(value, str) and value else None
    return token if isinstance(token, str) else None


def _ids(ids: Iterable[int]) -> str:
    return ", ".join(map(str, sorted(ids)))


def check_landings(site: Site) -> Iterable[Finding]:
    """Each route's ``landings`` against its campaign's landings on the emulator.

    A local landing of the campaign that the route does not map is an error (its visitors
    see ``landing_default``); an id the campaign has not, or a remote landing, a warning.
    Against a real tracker the ids cannot be checked: one warning says so.
    """
    routes = [campaign for campaign in site.routes if campaign.route.landings is not None]
    if not routes or not site.config.enabled:
        return
    campaigns = emulator_campaigns(site.config)
    if isinstance(campaigns, str):
        for campaign in routes:
            yield Finding.warning(
                f"route {campaign.name}: its landing ids cannot be checked: {campaigns};"
                " compare them with the campaign's streams in the tracker"
            )
        return
    for campaign in routes:
        token = _route_token(campaign, site)
        if token is None:
            yield Finding.warning(
                f"route {campaign.name}: its landing ids cannot be checked: its campaign token"
                " is chosen per request"
            )
            continue
        landings = campaigns.get(token_digest(token))
        if landings is None:
            yield Finding.error(
                f"route {campaign.name}: no campaign of the emulator has its token"
                f" ...{token_hint(token)}, so its landing ids cannot be checked"
            )
            continue
        mapped = set(campaign.route.landings or {})
        where = f"campaign {landings.campaign_id} ({landings.name})"
        unmapped = landings.local - mapped
        if unmapped:
            yield Finding.error(
                f"route {campaign.name}: {where} rotates the local landings {_ids(unmapped)},"
                " which the route's landings do not map: their visitors see landing_default"
            )
        remote = mapped & landings.remote
        if remote:
            yield Finding.warning(
                f"route {campaign.name}: landings {_ids(remote)} of {where} are remote: the"
                " tracker sends their visitors to their URL, and the route never shows them"
            )
        unknown = mapped - landings.local - landings.remote
        if unknown:
            yield Finding.warning(
                f"route {campaign.name}: {where} has no landings {_ids(unknown)}: the route"
                f" maps them for nothing (its local landings: {_ids(landings.local) or 'none'})"
            )


#: The checks ``flask keitaro check`` runs, in this order.
CHECKS: list[Check] = [
    check_enabled,
    check_routes,
    check_view_order,
    check_state,
    check_prefetch,
    check_private_cookies,
    check_landings,
]


def run_checks(site: Site, checks: Iterable[Check] | None = None) -> list[Finding]:
    """Every finding of ``checks`` (by default :data:`CHECKS`) on ``site``, in order."""
    return [finding for check in (CHECKS if checks is None else checks) for finding in check(site)]
