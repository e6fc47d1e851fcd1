"""The head of the tracker's HTTP answer, read as ``http.client`` reads it, and stricter.

``http.client`` parses an answer's header lines with the ``email`` package's feed parser: 19 µs
of a call's 240 for a tracker's five header lines, where reading them line by line into the
same ``HTTPMessage`` takes 4. So the package's response reads its head here, with
``http.client``'s own limits (64 KiB a line, 100 header lines) and rules (the status line,
the version, the framing, whether the connection closes); a test holds the result to
``http.client``'s for every head both take. What ``http.client`` would take with a "defect"
— a header line without a name and a colon, a name that is not a token, a line folded onto
the one before — is refused here instead (urllib3 would log such a head with the call's URL,
a postback's key in it).

Interim answers are read past here too: up to :data:`MAX_INTERIM_ANSWERS` (``100``, ``102``,
``103``) before the final one; a ``101`` is refused.
"""

from __future__ import annotations

import http.client
import io
from dataclasses import dataclass

from .characters import is_token

#: The longest line of a head, as ``http.client`` has it.
MAX_LINE = 65536

#: The most lines of a head after its status line, the blank line that ends it included,
#: as ``http.client`` counts them (so at most 99 header fields).
MAX_HEADERS = 100

#: How many interim (1xx) answers are read past before the final one.
MAX_INTERIM_ANSWERS = 5


class InvalidAnswer(Exception):
    """The tracker's answer breaks a rule of the transport; the package reports it as
    :exc:`~flask_keitaro.InvalidTrackerResponse` (the tracker is up: no breaker count)."""


@dataclass(frozen=True)
class Head:
    """A final answer's head: what ``http.client``'s ``begin`` sets on its response."""

    #: ``10`` for HTTP/1.0 (and 0.9), ``11`` for HTTP/1.x.
    version: int
    status: int
    reason: str
    message: http.client.HTTPMessage
    chunked: bool
    #: The body's length: ``None`` when it runs until the connection closes (or is chunked).
    length: int | None
    will_close: bool
    #: Each field's first value by its lower-case name: what ``message.get(name)`` gives.
    fields: dict[str, str]


def read_head(fp: io.BufferedIOBase, method: str | None) -> Head:
    """Read the head of the final answer (past interim ones) from ``fp``.

    Raises :exc:`InvalidAnswer`, and ``http.client``'s ``RemoteDisconnected``,
    ``BadStatusLine`` and ``UnknownProtocol`` where ``http.client`` does.
    """
    for _ in range(MAX_INTERIM_ANSWERS + 1):
        version, status, reason = _status_line(fp)
        message, fields = _header_lines(fp)
        if status >= 200:
            break
        if status == 101:
            raise InvalidAnswer("the tracker tried to switch protocols (101)")
    else:
        raise InvalidAnswer(f"the tracker sent over {MAX_INTERIM_ANSWERS} interim answers")
    if version in ("HTTP/1.0", "HTTP/0.9"):
        number = 10
    elif version.startswith("HTTP/1."):
        number = 11
    else:
        raise http.client.UnknownProtocol(version)
    encoding = fields.get("transfer-encoding")
    chunked = encoding is not None and encoding.lower() == "chunked"
    will_close = _will_close(fields, number)
    length: int | None = None
    given = fields.get("content-length")
    if given and not chunked:
        try:
            length = int(given)
        except ValueError:
            length = None
        else:
            if length < 0:
                length = None
    if status in (204, 304) or method == "HEAD":
        length = 0
    if not will_close and not chunked and length is None:
        will_close = True
    return Head(number, status, reason.strip(), message, chunked, length, will_close, fields)


def _status_line(fp: io.BufferedIOBase) -> tuple[str, int, str]:
    raw = fp.readline(MAX_LINE + 1)
    if len(raw) > MAX_LINE:
        raise InvalidAnswer("the status line of the tracker's answer is over 64 KiB")
    if not raw:
        raise http.client.RemoteDisconnected("Remote end closed connection without response")
    line = str(raw, "iso-8859-1")
    try:
        version, status, reason = line.split(None, 2)
    except ValueError:
        try:
            version, status = line.split(None, 1)
            reason = ""
        except ValueError:
            version = ""
    if not version.startswith("HTTP/"):
        raise http.client.BadStatusLine(line)
    try:
        code = int(status)
    except ValueError:
        raise http.client.BadStatusLine(line) from None
    if not 100 <= code <= 999:
        raise http.client.BadStatusLine(line)
    return version, code, reason


def _header_lines(fp: io.BufferedIOBase) -> tuple[http.client.HTTPMessage, dict[str, str]]:
    """The header lines as ``http.client``'s message, and each field's first value by its
    lower-case name (what the message's ``get`` finds, without a walk of every line)."""
    message = http.client.HTTPMessage()
    fields: dict[str, str] = {}
    count = 0
    while True:
        raw = fp.readline(MAX_LINE + 1)
        if len(raw) > MAX_LINE:
            raise InvalidAnswer("a header line of the tracker's answer is over 64 KiB")
        count += 1
        if count > MAX_HEADERS:
            raise InvalidAnswer(f"the tracker's answer has over {MAX_HEADERS} header lines")
        if raw in (b"\r\n", b"\n", b""):
            return message, fields
        name, colon, value = str(raw, "iso-8859-1").partition(":")
        if not colon or not is_token(name):
            raise InvalidAnswer("a header line of the tracker's answer is malformed")
        value = value.lstrip(" \t").rstrip("\r\n")
        message[name] = value
        fields.setdefault(name.lower(), value)


def _will_close(fields: dict[str, str], version: int) -> bool:
    """Whether the connection closes after this answer (``http.client``'s rule)."""
    connection = fields.get("connection")
    if version == 11:
        return connection is not None and "close" in connection.lower()
    if fields.get("keep-alive"):
        return False
    if connection and "keep-alive" in connection.lower():
        return False
    proxy = fields.get("proxy-connection")
    return not (proxy and "keep-alive" in proxy.lower())
