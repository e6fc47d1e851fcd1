"""Stream actions: one registry, each action's name, stream keys, validation and answer together.

An action class reads the stream keys it uses (:meth:`Action.from_config`) and
renders what the visitor gets once the engine has chosen the stream, landing and
offer (:meth:`Action.render`). :data:`ACTIONS` maps the config's ``action`` to the class.
"""

from __future__ import annotations

import html
import json
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from .checks import Where
from .macros import expand_html, expand_text, expand_url
from .model import Target

#: ``contentType`` of an HTML answer (and of an answer with no body).
HTML = "text/html; charset=utf-8"
#: ``contentType`` of a ``show_text`` answer.
TEXT = "text/plain; charset=utf-8"


@dataclass(frozen=True)
class Choice:
    """What the engine chose for a click: what an action renders."""

    landing: Target | None
    offer: Target | None
    #: ``force_redirect_offer=1`` on a stream with an offer: straight to the offer.
    force_offer: bool
    #: Macro values of the click.
    values: Mapping[str, str]
    #: The caller is kversion >= 3.4: a redirect answers 302 (older callers get 200).
    http_redirect: bool


@dataclass(frozen=True)
class Rendered:
    """What the visitor gets: the answer's ``status``, ``headers``, ``body`` and ``contentType``."""

    status: int = 200
    headers: tuple[str, ...] = ()
    body: str | None = None
    content_type: str = HTML
    #: ``info.url``: the URL template the answer came from (macros unfilled), if any.
    url: str | None = None


class Action(ABC):
    """What a stream does with a visitor."""

    #: The action's name in the config (``action = "..."``).
    name: ClassVar[str]
    #: Stream keys the action reads; the other actions' keys are errors on its stream.
    keys: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def from_config(cls, where: Where, table: Mapping[str, Any]) -> Self:
        """Validate the keys the action reads in the stream ``table`` and build it."""
        return cls()

    @abstractmethod
    def render(self, choice: Choice) -> Rendered:
        """The answer for one click."""


def _redirect(url: str, template: str, choice: Choice) -> Rendered:
    # Real trackers answer old clients 200 with the Location header.
    status = 302 if choice.http_redirect else 200
    return Rendered(status=status, headers=(f"Location: {url}",), url=template)


@dataclass(frozen=True)
class _UrlAction(Action):
    """An action that sends the visitor to the stream's ``url`` (macros filled)."""

    keys: ClassVar[frozenset[str]] = frozenset({"url"})
    url: str = ""

    @classmethod
    def from_config(cls, where: Where, table: Mapping[str, Any]) -> Self:
        url = where.string(table.get("url", ""), "url")
        if not url:
            raise where.error("url", f"missing: action {cls.name!r} needs it")
        return cls(url)


@dataclass(frozen=True)
class Location(_UrlAction):
    """A ``Location`` header; 302 for kversion >= 3.4 callers, else 200."""

    name: ClassVar[str] = "location"

    def render(self, choice: Choice) -> Rendered:
        return _redirect(expand_url(self.url, choice.values), self.url, choice)


@dataclass(frozen=True)
class Meta(_UrlAction):
    """A page with a ``<meta http-equiv="refresh">`` to the URL."""

    name: ClassVar[str] = "meta"

    def render(self, choice: Choice) -> Rendered:
        target = html.escape(expand_url(self.url, choice.values))
        page = (
            "<!DOCTYPE html><html><head>"
            f'<meta http-equiv="refresh" content="0; url={target}">'
            f'</head><body><a href="{target}">Continue</a></body></html>'
        )
        return Rendered(body=page, url=self.url)


@dataclass(frozen=True)
class Js(_UrlAction):
    """A page whose script sends the browser to the URL."""

    name: ClassVar[str] = "js"

    def render(self, choice: Choice) -> Rendered:
        url = expand_url(self.url, choice.values)
        # json.dumps gives a JS string literal; "</" is broken up so it cannot end the script.
        literal = json.dumps(url).replace("</", "<\\/")
        page = (
            "<!DOCTYPE html><html><head><script>"
            f"window.location.replace({literal});"
            f'</script></head><body><a href="{html.escape(url)}">Continue</a></body></html>'
        )
        return Rendered(body=page, url=self.url)


@dataclass(frozen=True)
class ShowHtml(Action):
    """The stream's ``html`` as the body (macros HTML-escaped)."""

    name: ClassVar[str] = "show_html"
    keys: ClassVar[frozenset[str]] = frozenset({"html"})
    html: str = ""

    @classmethod
    def from_config(cls, where: Where, table: Mapping[str, Any]) -> Self:
        page = where.string(table.get("html", ""), "html")
        if not page:
            raise where.error("html", "missing: action 'show_html' needs it")
        return cls(page)

    def render(self, choice: Choice) -> Rendered:
        return Rendered(body=expand_html(self.html, choice.values))


@dataclass(frozen=True)
class ShowText(Action):
    """The stream's ``text`` as a ``text/plain`` body (may be empty)."""

    name: ClassVar[str] = "show_text"
    keys: ClassVar[frozenset[str]] = frozenset({"text"})
    text: str = ""

    @classmethod
    def from_config(cls, where: Where, table: Mapping[str, Any]) -> Self:
        return cls(where.string(where.required(table, "text"), "text"))

    def render(self, choice: Choice) -> Rendered:
        return Rendered(body=expand_text(self.text, choice.values), content_type=TEXT)


class Status404(Action):
    """Status 404, no body."""

    name: ClassVar[str] = "status404"

    def render(self, choice: Choice) -> Rendered:
        return Rendered(status=404)


class DoNothing(Action):
    """Status 200, nothing else: the site shows its own page."""

    name: ClassVar[str] = "do_nothing"

    def render(self, choice: Choice) -> Rendered:
        return Rendered()


class Landings(Action):
    """The chosen landing: ``local`` shows the site's page, a URL redirects; or the offer."""

    name: ClassVar[str] = "landings"
    keys: ClassVar[frozenset[str]] = frozenset({"landings"})

    @classmethod
    def from_config(cls, where: Where, table: Mapping[str, Any]) -> Self:
        if not table.get("landings"):
            raise where.error("landings", "missing: action 'landings' needs at least one landing")
        return cls()

    def render(self, choice: Choice) -> Rendered:
        if choice.force_offer and choice.offer is not None:
            offer = choice.offer
            return _redirect(expand_url(offer.url, choice.values), offer.url, choice)
        landing = choice.landing
        if landing is None or landing.is_local:
            return Rendered()
        return _redirect(expand_url(landing.url, choice.values), landing.url, choice)


#: Action name -> its class: the one list of actions the emulator knows.
ACTIONS: dict[str, type[Action]] = {
    cls.name: cls
    for cls in (Location, Meta, Js, ShowHtml, ShowText, Status404, DoNothing, Landings)
}

#: The answer when no stream takes the visitor.
NO_STREAM = DoNothing()

#: Every key some action reads: on a stream whose action does not, it is an error.
ACTION_KEYS = frozenset().union(*(cls.keys for cls in ACTIONS.values()))


def parse_action(where: Where, table: Mapping[str, Any]) -> Action:
    """The stream's action, validated by its registry entry."""
    name = where.string(where.required(table, "action"), "action")
    action_class = ACTIONS.get(name)
    if action_class is None:
        raise where.error("action", f"unknown action {name!r} (known: {', '.join(ACTIONS)})")
    unused = sorted(ACTION_KEYS.intersection(table) - action_class.keys)
    if unused:
        raise where.error(unused[0], f"not used by action {name!r}")
    return action_class.from_config(where, table)
