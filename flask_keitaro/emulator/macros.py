"""Macros in stream URLs, bodies and cookie values: ``$keyword``, ``{subid}``, ``{sub_id_1}``...

Values are URL-encoded in URLs and HTML-escaped in HTML bodies; an unknown
``{name}`` is left as it is, so literal braces in a page survive.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Mapping
from urllib.parse import quote

#: Macro names the emulator fills (``{name}``), besides ``$keyword``.
MACRO_NAMES = frozenset(
    {
        "keyword",
        "subid",
        "sub_id",
        "campaign_id",
        "stream_id",
        "ip",
        "country",
        "language",
        "source",
        "external_id",
        "landing_id",
        "offer_id",
        "token",
    }
    | {f"sub_id_{n}" for n in range(1, 31)}
)

_MACRO = re.compile(r"\$keyword\b|\{([a-z0-9_]+)\}")


def macro_values(
    params: Mapping[str, str],
    *,
    sub_id: str,
    campaign_id: int,
    stream_id: int | None,
    ip: str,
    country: str,
    language: str,
    keyword: str,
    source: str,
    external_id: str,
    landing_id: int | None,
    offer_id: int | None,
    token: str | None,
) -> dict[str, str]:
    """Every macro's value for one click; missing values are empty strings."""
    values = {f"sub_id_{n}": params.get(f"sub_id_{n}", "") for n in range(1, 31)}
    values.update(
        keyword=keyword,
        subid=sub_id,
        sub_id=sub_id,
        campaign_id=str(campaign_id),
        stream_id="" if stream_id is None else str(stream_id),
        ip=ip,
        country=country,
        language=language,
        source=source,
        external_id=external_id,
        landing_id="" if landing_id is None else str(landing_id),
        offer_id="" if offer_id is None else str(offer_id),
        token=token or "",
    )
    return values


def _expand(template: str, values: Mapping[str, str], encode: Callable[[str], str]) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or "keyword"
        if name not in MACRO_NAMES:
            return match.group(0)
        return encode(values.get(name, ""))

    return _MACRO.sub(replace, template)


def expand_url(template: str, values: Mapping[str, str]) -> str:
    """Fill macros in a URL, URL-encoding each value."""
    return _expand(template, values, lambda value: quote(value, safe=""))


def expand_html(template: str, values: Mapping[str, str]) -> str:
    """Fill macros in an HTML body, HTML-escaping each value."""
    return _expand(template, values, html.escape)


def expand_text(template: str, values: Mapping[str, str]) -> str:
    """Fill macros in a plain-text body, values as they are."""
    return _expand(template, values, lambda value: value)
