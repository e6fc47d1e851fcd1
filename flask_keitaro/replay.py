"""Replay: a ClickResult becomes the werkzeug Response the visitor gets, headers sanitised."""

from __future__ import annotations

import logging

from werkzeug.wrappers import Response

from .config import is_token
from .result import ClickResult, split_header

logger = logging.getLogger("flask_keitaro")

# Hop-by-hop headers (RFC 9110 7.6.1) and those the server computes itself.
_DROPPED = frozenset(
    {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "content-length",
    }
)


def safe_headers(lines: tuple[str, ...]) -> list[tuple[str, str]]:
    """The tracker's header lines a visitor may be sent; the others are dropped and logged."""
    out = []
    for line in lines:
        parts = split_header(line)
        if parts is None or not is_token(parts[0]) or any(c in parts[1] for c in "\r\n\0"):
            logger.warning("Dropped an invalid header from the tracker's answer: %.40r", line)
            continue
        name, value = parts
        lower = name.lower()
        if lower in _DROPPED or lower.startswith("proxy-"):
            continue
        out.append((name, value))
    return out


def to_response(result: ClickResult) -> Response:
    """The response the tracker decided on: its status, sanitised headers, content type and body."""
    response = Response(result.body, status=result.effective_status)
    headers = safe_headers(result.header_lines)
    has_type = False
    for name, value in headers:
        if name.lower() == "content-type":
            if result.content_type:
                continue  # ``contentType`` is the tracker's word on it.
            has_type = True
        response.headers.add(name, value)
    if result.content_type and not any(c in result.content_type for c in "\r\n\0"):
        response.headers["Content-Type"] = result.content_type
    elif not has_type:
        response.headers["Content-Type"] = "text/html; charset=utf-8"
    return response
