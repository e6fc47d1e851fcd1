"""The click engine: stream choice by filters, actions and the answer to each click.

Stream choice follows the Click API: intercepting streams in order (the first
that passes wins), then one regular stream by weight among those that pass,
then the first fallback that passes; none: a ``do_nothing`` answer.
"""

from __future__ import annotations

import html
import json
import logging
import random
import string
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from .macros import expand_html, expand_text, expand_url, macro_values
from .model import CampaignConfig, EmulatorConfig, FilterConfig, StreamConfig, Target
from .store import ClickStore
from .uniqueness import UniquenessState, offer_token
from .visitor import CallData, country_of, ip_address, is_bot

log = logging.getLogger("flask_keitaro.emulator")

_SUB_ID_ALPHABET = string.digits + string.ascii_lowercase
_HTML = "text/html; charset=utf-8"
_TEXT = "text/plain; charset=utf-8"

T = TypeVar("T")


@dataclass(frozen=True)
class _Click:
    """What is known of the click while its streams are checked."""

    campaign: CampaignConfig
    call: CallData
    country: str
    is_bot: bool
    uniqueness: UniquenessState
    now: float


def _yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


class ClickEngine:
    """Decides and records clicks for one config; safe to call from many threads."""

    def __init__(
        self,
        config: EmulatorConfig,
        store: ClickStore,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        # Stream choice, the limit counts it reads and the write of the click happen
        # under one lock, so a limit holds exactly and a seeded run is reproducible.
        self._lock = threading.Lock()
        self._random = random.Random(config.seed)

    def reset(self) -> None:
        """Clear the click log and restart the seeded random sequence."""
        with self._lock:
            self.store.reset()
            self._random = random.Random(self.config.seed)

    # -- clicks -------------------------------------------------------------------

    def click(self, params: Mapping[str, str], remote_addr: str) -> tuple[int, dict[str, Any]]:
        """Answer one Click API v3 call: ``(HTTP status, JSON body)``."""
        started = time.perf_counter()
        campaign = self.config.campaign_by_token(params.get("token", ""))
        if campaign is None:
            return 401, {"error": "Invalid token: campaign not found"}
        if not campaign.click_api:
            return 409, {"error": "Click API is turned off for this campaign"}
        call = CallData.from_params(params, remote_addr)
        click = _Click(
            campaign=campaign,
            call=call,
            country=country_of(call.ip, self.config),
            is_bot=is_bot(call, self.config),
            uniqueness=UniquenessState.from_cookie(call.uniqueness_cookie, self.config.secret),
            now=self.clock(),
        )
        ttl = campaign.cookies_ttl
        unique_campaign = click.uniqueness.is_unique("campaign", campaign.id, click.now, ttl)
        unique_global = click.uniqueness.is_unique("global", None, click.now, ttl)
        lines = [
            f"Processing campaign {campaign.id}",
            f"Referrer: {call.referrer}",
            f"Source: {call.source}",
            f"Keyword: {call.keyword}",
            f"IP: {call.ip}",
            f"UserAgent: {call.user_agent}",
            f"Language: {call.language}",
            f"Is unique in campaign: {_yes_no(unique_campaign)}",
        ]
        with self._lock:
            stream = self._choose_stream(click, lines)
            unique_stream = stream is None or click.uniqueness.is_unique(
                "stream", stream.id, click.now, ttl
            )
            sub_id = self._new_sub_id()
            answer, row = self._answer(click, stream, sub_id, lines)
            click.uniqueness.visit(campaign.id, stream.id if stream else None, click.now, ttl)
            answer["uniqueness_cookie"] = click.uniqueness.to_cookie(self.config.secret)
            answer["info"]["uniqueness"] = {
                "campaign": unique_campaign,
                "stream": unique_stream,
                "global": unique_global,
            }
            row.update(
                unique_campaign=unique_campaign,
                unique_stream=unique_stream,
                unique_global=unique_global,
            )
            self.store.add_click(row)
        log.info(
            "click campaign=%s stream=%s sub_id=%s action=%s status=%s bot=%s unique=%s",
            campaign.id,
            row["stream_id"],
            sub_id,
            row["action"],
            answer["status"],
            _yes_no(click.is_bot),
            _yes_no(unique_campaign),
        )
        if call.want_log:
            lines.append(f"[Profiler] {time.perf_counter() - started:.3f} sec.")
            answer["log"] = lines
        return 200, answer

    def _new_sub_id(self) -> str:
        # Unique per click even when a seeded run writes into an old click log.
        while True:
            sub_id = "".join(self._random.choices(_SUB_ID_ALPHABET, k=13))
            if self.store.click(sub_id) is None:
                return sub_id

    def _weighted(self, items: Sequence[T], weights: Sequence[float]) -> T:
        return self._random.choices(items, weights=weights)[0]

    def _choose_stream(self, click: _Click, lines: list[str]) -> StreamConfig | None:
        streams = click.campaign.streams
        for stream in (s for s in streams if s.type == "intercepting"):
            if self._passes(click, stream, lines):
                return stream
        regular = [s for s in streams if s.type == "regular" and self._passes(click, s, lines)]
        if regular:
            return self._weighted(regular, [s.weight for s in regular])
        for stream in (s for s in streams if s.type == "fallback"):
            if self._passes(click, stream, lines):
                return stream
        return None

    def _passes(self, click: _Click, stream: StreamConfig, lines: list[str]) -> bool:
        lines.append(f"Checking stream #{stream.id}")
        for flt in stream.filters:
            matched = self._matches(click, stream, flt)
            allowed = matched if flt.mode == "accept" else not matched
            lines.append(f'Filter "{flt.name}": {"allow" if allowed else "rejected"}')
            if not allowed:
                return False
        lines.append("Accepted by filters")
        return True

    def _matches(self, click: _Click, stream: StreamConfig, flt: FilterConfig) -> bool:
        call = click.call
        name = flt.name
        if name == "uniqueness":
            key = {"campaign": click.campaign.id, "stream": stream.id}.get(flt.scope)
            return click.uniqueness.is_unique(flt.scope, key, click.now, click.campaign.cookies_ttl)
        if name == "country":
            return click.country in flt.values
        if name == "ip":
            address = ip_address(call.ip)
            return address is not None and any(address in net for net in flt.networks)
        if name == "language":
            return call.language in flt.values
        if name in ("user_agent", "referrer"):
            assert flt.pattern is not None  # config validation guarantees it
            subject = call.user_agent if name == "user_agent" else call.referrer
            return flt.pattern.search(subject) is not None
        if name == "bot":
            return click.is_bot
        if name == "x_requested_with":
            # "" in values stands for "the header was absent".
            return call.x_requested_with in flt.values
        if name == "keyword":
            return call.keyword.lower() in flt.values
        if name == "param":
            return call.params.get(flt.param, "") in flt.values
        return self._under_limit(click.now, stream.id, flt)

    def _under_limit(self, now: float, stream_id: int, flt: FilterConfig) -> bool:
        for limit, window in ((flt.per_hour, 3600), (flt.per_day, 86400), (flt.total, None)):
            if limit is None:
                continue
            since = None if window is None else now - window
            if self.store.count_stream_clicks(stream_id, since) >= limit:
                return False
        return True

    # -- answers ------------------------------------------------------------------

    def _answer(
        self, click: _Click, stream: StreamConfig | None, sub_id: str, lines: list[str]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        call = click.call
        campaign = click.campaign
        action = stream.action if stream else "do_nothing"
        offer = self._pick(stream.offers) if stream and stream.offers else None
        landing: Target | None = None
        if stream is not None and action == "landings":
            named = [t for t in stream.landings if t.id == call.landing_id]
            landing = named[0] if named else self._pick(stream.landings)
        force_offer = action == "landings" and call.force_redirect_offer and offer is not None
        if force_offer:
            landing = None
        token = offer_token(sub_id, self.config.secret) if offer else None
        values = macro_values(
            call.params,
            sub_id=sub_id,
            campaign_id=campaign.id,
            stream_id=stream.id if stream else None,
            ip=call.ip,
            country=click.country,
            language=call.language,
            keyword=call.keyword,
            source=call.source,
            external_id=call.external_id,
            landing_id=landing.id if landing else None,
            offer_id=offer.id if offer else None,
            token=token,
        )
        answer: dict[str, Any] = {
            "body": None,
            "contentType": _HTML,
            "headers": [],
            "status": 200,
            "uniqueness_cookie": None,
            "cookies": {name: expand_url(value, values) for name, value in campaign.cookies},
            "cookies_ttl": campaign.cookies_ttl,
        }
        url_template: str | None = stream.url if stream and stream.url else None
        redirect: str | None = None
        if stream is None:
            lines.append("No stream accepted the visitor")
        else:
            lines.append(f"Stream #{stream.id}")
            if landing is not None:
                lines.append(f"Landing #{landing.id}")
            if offer is not None:
                lines.append(f"Offer #{offer.id}")
        if action in ("location", "meta", "js"):
            redirect = expand_url(url_template or "", values)
        elif action == "show_html" and stream:
            answer["body"] = expand_html(stream.html, values)
        elif action == "show_text" and stream:
            answer["body"] = expand_text(stream.text, values)
            answer["contentType"] = _TEXT
        elif action == "status404":
            answer["status"] = 404
        elif force_offer and offer:
            url_template = offer.url
            redirect = expand_url(offer.url, values)
        elif landing is not None:
            url_template = None if landing.is_local else landing.url
            if not landing.is_local:
                redirect = expand_url(landing.url, values)
        if redirect is not None:
            if action == "meta":
                answer["body"] = _meta_page(redirect)
            elif action == "js":
                answer["body"] = _js_page(redirect)
            else:
                answer["headers"] = [f"Location: {redirect}"]
                # Real trackers answer 200 with a Location header to old clients.
                answer["status"] = 302 if call.wants_http_redirect else 200
        lines.extend(f"Send headers: {header}" for header in answer["headers"])
        answer["info"] = {
            "campaign_id": campaign.id,
            "stream_id": stream.id if stream else None,
            "sub_id": sub_id,
            "landing_id": landing.id if landing else None,
            "offer_id": [offer.id] if offer else [],
            "token": token,
            "uniqueness": {},
            "is_bot": click.is_bot,
            "type": action,
            "url": url_template,
        }
        params = {k: v for k, v in call.params.items() if k != "token"}
        row: dict[str, Any] = {
            "time": click.now,
            "sub_id": sub_id,
            "campaign_id": campaign.id,
            "stream_id": stream.id if stream else None,
            "landing_id": landing.id if landing else None,
            "offer_id": offer.id if offer else None,
            "action": action,
            "status": answer["status"],
            "ip": call.ip,
            "country": click.country,
            "language": call.language,
            "user_agent": call.user_agent,
            "referrer": call.referrer,
            "keyword": call.keyword,
            "source": call.source,
            "external_id": call.external_id,
            "x_requested_with": call.x_requested_with,
            "is_bot": click.is_bot,
            "params": params,
        }
        return answer, row

    def _pick(self, targets: Sequence[Target]) -> Target:
        return self._weighted(targets, [t.weight for t in targets])

    def pick(self, targets: Sequence[Target]) -> Target:
        """One of ``targets`` by weight, from the engine's (seeded) random sequence."""
        with self._lock:
            return self._pick(targets)


def _meta_page(url: str) -> str:
    target = html.escape(url)
    return (
        "<!DOCTYPE html><html><head>"
        f'<meta http-equiv="refresh" content="0; url={target}">'
        f'</head><body><a href="{target}">Continue</a></body></html>'
    )


def _js_page(url: str) -> str:
    # json.dumps gives a JS string literal; "</" is broken up so it cannot end the script.
    literal = json.dumps(url).replace("</", "<\\/")
    return (
        "<!DOCTYPE html><html><head><script>"
        f"window.location.replace({literal});"
        f'</script></head><body><a href="{html.escape(url)}">Continue</a></body></html>'
    )
