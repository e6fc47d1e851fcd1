"""The engine: clicks (decide, render, record), offer links and postbacks, for one config.

Stream choice follows the Click API: intercepting streams in order (the first
that passes wins), then one regular stream by weight among those that pass,
then the first fallback that passes; none: a ``do_nothing`` answer.
"""

from __future__ import annotations

import logging
import random
import string
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from .actions import NO_STREAM, Choice, Rendered
from .conversions import Postback, changed_conversion, new_conversion, plan, read_postback
from .filters import ClickFacts
from .macros import expand_url, macro_values
from .model import EmulatorConfig, StreamConfig, Target
from .store import ClickStore
from .uniqueness import UniquenessState, offer_token, read_offer_token
from .visitor import CallData, country_of, is_bot

log = logging.getLogger("flask_keitaro.emulator")

_SUB_ID_ALPHABET = string.digits + string.ascii_lowercase

T = TypeVar("T")


def _yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


@dataclass(frozen=True)
class Decision:
    """Everything decided for one click, before anything is rendered or recorded."""

    facts: ClickFacts
    stream: StreamConfig | None
    sub_id: str
    #: The offer token (``info.token``); ``None`` when the stream has no offers.
    token: str | None
    choice: Choice
    #: Uniqueness of the click by scope: ``campaign``, ``stream``, ``global``.
    unique: Mapping[str, bool]
    uniqueness_cookie: str
    #: The ``log`` lines so far.
    lines: list[str]


@dataclass(frozen=True)
class PostbackOutcome:
    """What a postback did: ``result`` is ``created``, ``rebill``, ``updated``, ``changed``,
    ``ignored`` or ``not_found``; ``conversion`` the conversion it made or changed."""

    result: str
    message: str
    conversion: dict[str, Any] | None
    #: The postback's ``return`` text, to answer with.
    answer: str | None


class ClickEngine:
    """Decides and records clicks, offer clicks and postbacks; safe to call from many threads."""

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
        # under one lock, so a limit holds exactly and a seeded run is reproducible;
        # a postback reads and changes a click's conversions under it too.
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
        try:
            call = CallData.from_params(params, remote_addr)
        except ValueError as exc:
            return 400, {"error": str(exc)}
        facts = ClickFacts(
            campaign=campaign,
            call=call,
            country=country_of(call.ip, self.config),
            is_bot=is_bot(call, self.config),
            uniqueness=UniquenessState.from_cookie(call.uniqueness_cookie, self.config.secret),
            now=self.clock(),
            stream_clicks=self.store.count_stream_clicks,
        )
        with self._lock:
            decision = self._decide(facts)
            action = decision.stream.action if decision.stream else NO_STREAM
            rendered = action.render(decision.choice)
            self.store.add_click(_click_row(decision, rendered))
        answer = _answer(decision, rendered)
        log.info(
            "click campaign=%s stream=%s sub_id=%s action=%s status=%s bot=%s unique=%s",
            campaign.id,
            answer["info"]["stream_id"],
            decision.sub_id,
            answer["info"]["type"],
            rendered.status,
            _yes_no(facts.is_bot),
            _yes_no(decision.unique["campaign"]),
        )
        if call.want_log:
            lines = decision.lines + [f"Send headers: {header}" for header in rendered.headers]
            lines.append(f"[Profiler] {time.perf_counter() - started:.3f} sec.")
            answer["log"] = lines
        return 200, answer

    def _decide(self, facts: ClickFacts) -> Decision:
        call, campaign, now, ttl = facts.call, facts.campaign, facts.now, facts.campaign.cookies_ttl
        uniqueness = facts.uniqueness
        unique = {
            "campaign": uniqueness.is_unique("campaign", campaign.id, now, ttl),
            "global": uniqueness.is_unique("global", None, now, ttl),
        }
        lines = [
            f"Processing campaign {campaign.id}",
            f"Referrer: {call.referrer}",
            f"Source: {call.source}",
            f"Keyword: {call.keyword}",
            f"IP: {call.ip}",
            f"UserAgent: {call.user_agent}",
            f"Language: {call.language}",
            f"Is unique in campaign: {_yes_no(unique['campaign'])}",
        ]
        stream = self._choose_stream(facts, lines)
        unique["stream"] = stream is None or uniqueness.is_unique("stream", stream.id, now, ttl)
        sub_id = self._new_sub_id()
        offer = self._pick(stream.offers) if stream and stream.offers else None
        landing: Target | None = None
        if stream is not None and stream.landings:
            named = [t for t in stream.landings if t.id == call.landing_id]
            landing = named[0] if named else self._pick(stream.landings)
        force_offer = landing is not None and call.force_redirect_offer and offer is not None
        if force_offer:
            landing = None
        if stream is None:
            lines.append("No stream accepted the visitor")
        else:
            lines.append(f"Stream #{stream.id}")
            lines.extend(
                f"{kind} #{t.id}" for kind, t in (("Landing", landing), ("Offer", offer)) if t
            )
        token = offer_token(sub_id, self.config.secret) if offer else None
        values = macro_values(
            call.params,
            sub_id=sub_id,
            campaign_id=campaign.id,
            stream_id=stream.id if stream else None,
            ip=call.ip,
            country=facts.country,
            language=call.language,
            keyword=call.keyword,
            source=call.source,
            external_id=call.external_id,
            landing_id=landing.id if landing else None,
            offer_id=offer.id if offer else None,
            token=token,
        )
        uniqueness.visit(campaign.id, stream.id if stream else None, now, ttl)
        return Decision(
            facts=facts,
            stream=stream,
            sub_id=sub_id,
            token=token,
            choice=Choice(landing, offer, force_offer, values, call.wants_http_redirect),
            unique=unique,
            uniqueness_cookie=uniqueness.to_cookie(self.config.secret),
            lines=lines,
        )

    def _new_sub_id(self) -> str:
        # Unique per click even when a seeded run writes into an old click log.
        while True:
            sub_id = "".join(self._random.choices(_SUB_ID_ALPHABET, k=13))
            if self.store.click(sub_id) is None:
                return sub_id

    def _weighted(self, items: Sequence[T], weights: Sequence[float]) -> T:
        return self._random.choices(items, weights=weights)[0]

    def _pick(self, targets: Sequence[Target]) -> Target:
        return self._weighted(targets, [t.weight for t in targets])

    def _choose_stream(self, facts: ClickFacts, lines: list[str]) -> StreamConfig | None:
        streams = facts.campaign.streams
        for stream in (s for s in streams if s.type == "intercepting"):
            if _passes(facts, stream, lines):
                return stream
        regular = [s for s in streams if s.type == "regular" and _passes(facts, s, lines)]
        if regular:
            return self._weighted(regular, [s.weight for s in regular])
        for stream in (s for s in streams if s.type == "fallback"):
            if _passes(facts, stream, lines):
                return stream
        return None

    # -- after the click ------------------------------------------------------------

    def offer_click(self, token: str, extra: Mapping[str, str]) -> tuple[str | None, str]:
        """Follow an offer link: ``(offer URL, "")`` or ``(None, why it is not found)``."""
        sub_id = read_offer_token(token, self.config.secret)
        click = self.store.click(sub_id) if sub_id else None
        if click is None:
            return None, "Unknown or forged offer token"
        found = self.config.stream(click["stream_id"]) if click["stream_id"] else None
        if found is None or not found[1].offers:
            return None, "The click's stream has no offers"
        offers = found[1].offers
        # The offer chosen (by weight) at click time, so info.offer_id and the link agree.
        chosen = [o for o in offers if o.id == click["offer_id"]]
        with self._lock:
            offer = chosen[0] if chosen else self._pick(offers)
        params: dict[str, str] = {**click["params"], **extra}
        values = macro_values(
            params,
            sub_id=click["sub_id"],
            campaign_id=click["campaign_id"],
            stream_id=click["stream_id"],
            ip=click["ip"],
            country=click["country"],
            language=click["language"],
            keyword=params.get("keyword", click["keyword"]),
            source=click["source"],
            external_id=params.get("external_id", click["external_id"]),
            landing_id=click["landing_id"],
            offer_id=offer.id,
            token=token,
        )
        url = expand_url(offer.url, values)
        self.store.add_offer_click(
            {
                "time": self.clock(),
                "sub_id": click["sub_id"],
                "campaign_id": click["campaign_id"],
                "stream_id": click["stream_id"],
                "offer_id": offer.id,
                "url": url,
            }
        )
        log.info("offer click sub_id=%s offer=%s", click["sub_id"], offer.id)
        return url, ""

    def postback(self, params: Mapping[str, str]) -> PostbackOutcome:
        """Take a postback as Keitaro does; a bad field raises ``InvalidPostback``.

        An unknown ``subid`` is received and logged ("SubID not found") but records
        nothing, as in Keitaro's received postbacks log.
        """
        postback = read_postback(params)
        fields = dict(params)
        with self._lock:
            now = self.clock()
            outcome = self._apply_postback(postback, fields, now)
            conversion = outcome.conversion
            self.store.add_postback(
                {
                    "time": now,
                    "sub_id": postback.sub_id,
                    "status": postback.original_status,
                    "result": outcome.result,
                    "message": outcome.message,
                    "conversion_id": conversion["id"] if conversion else None,
                    "params": fields,
                }
            )
        log.info(
            "postback sub_id=%s status=%s result=%s",
            postback.sub_id,
            postback.original_status,
            outcome.result,
        )
        return outcome

    def _apply_postback(
        self, postback: Postback, fields: dict[str, str], now: float
    ) -> PostbackOutcome:
        def outcome(result: str, message: str, row: dict[str, Any] | None) -> PostbackOutcome:
            return PostbackOutcome(result, message, row, postback.answer)

        click = self.store.click(postback.sub_id)
        if click is None:
            return outcome("not_found", "SubID not found", None)
        step = plan(self.store.conversions_of(postback.sub_id), postback)
        if step.action == "ignore":
            return outcome("ignored", step.reason, None)
        if postback.sub_ids:
            self.store.update_click_params(postback.sub_id, postback.sub_ids)
        if step.target is None:
            row = new_conversion(click, postback, step.action == "rebill", now, fields)
            row["id"] = self.store.add_conversion(row)
            result = "rebill" if step.action == "rebill" else "created"
            return outcome(result, f"conversion {row['id']} {result}: {row['status']}", row)
        target = step.target
        changes = changed_conversion(step, postback, now, fields)
        self.store.update_conversion(target["id"], changes)
        row = {**target, **changes}
        if step.action == "update":
            return outcome("updated", f"conversion {row['id']} updated: {row['status']}", row)
        change = f"{target['status']} -> {row['status']}"
        return outcome("changed", f"conversion {row['id']}: {change}", row)


def _passes(facts: ClickFacts, stream: StreamConfig, lines: list[str]) -> bool:
    lines.append(f"Checking stream #{stream.id}")
    for flt in stream.filters:
        allowed = flt.passes(facts, stream.id)
        lines.append(f'Filter "{flt.name}": {"allow" if allowed else "rejected"}')
        if not allowed:
            return False
    lines.append("Accepted by filters")
    return True


def _answer(decision: Decision, rendered: Rendered) -> dict[str, Any]:
    """The Click API's JSON answer."""
    stream, choice = decision.stream, decision.choice
    campaign = decision.facts.campaign
    return {
        "body": rendered.body,
        "contentType": rendered.content_type,
        "headers": list(rendered.headers),
        "status": rendered.status,
        "uniqueness_cookie": decision.uniqueness_cookie,
        "cookies": {name: expand_url(value, choice.values) for name, value in campaign.cookies},
        "cookies_ttl": campaign.cookies_ttl,
        "info": {
            "campaign_id": campaign.id,
            "stream_id": stream.id if stream else None,
            "sub_id": decision.sub_id,
            "landing_id": choice.landing.id if choice.landing else None,
            "offer_id": [choice.offer.id] if choice.offer else [],
            "token": decision.token,
            "uniqueness": dict(decision.unique),
            "is_bot": decision.facts.is_bot,
            "type": (stream.action if stream else NO_STREAM).name,
            "url": rendered.url,
        },
    }


def _click_row(decision: Decision, rendered: Rendered) -> dict[str, Any]:
    """The click log's row for one click."""
    facts, stream, choice = decision.facts, decision.stream, decision.choice
    call = facts.call
    return {
        "time": facts.now,
        "sub_id": decision.sub_id,
        "campaign_id": facts.campaign.id,
        "stream_id": stream.id if stream else None,
        "landing_id": choice.landing.id if choice.landing else None,
        "offer_id": choice.offer.id if choice.offer else None,
        "action": (stream.action if stream else NO_STREAM).name,
        "status": rendered.status,
        "ip": call.ip,
        "country": facts.country,
        "language": call.language,
        "user_agent": call.user_agent,
        "referrer": call.referrer,
        "keyword": call.keyword,
        "source": call.source,
        "external_id": call.external_id,
        "x_requested_with": call.x_requested_with,
        "is_bot": facts.is_bot,
        "unique_campaign": decision.unique["campaign"],
        "unique_stream": decision.unique["stream"],
        "unique_global": decision.unique["global"],
        "params": {k: v for k, v in call.params.items() if k != "token"},
    }
