"""Postbacks: the client that reports conversions and never loses one.

:class:`PostbackClient` commits each conversion to its :class:`~flask_keitaro.outbox.Outbox`
first, tries to deliver it at once, and leaves what the tracker did not take to a delivery
thread (one per process, started on the first queued conversion) or to
:meth:`PostbackClient.flush`. :func:`deliver` sends one conversion with no outbox, for a task
queue's worker. The HTTP call itself is in :mod:`flask_keitaro.delivery`. Nothing here
imports Flask: the extension, the WSGI middleware and the CLI use it as it is.

The postback key in the URL's path is a secret. No message, log record, repr or signal made
here holds the URL.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from . import signals
from .config import KeitaroConfig, outbox_target
from .conversion import Conversion, postback_method
from .delivery import checked_url, deliver, post_fields, postback_transport
from .errors import ConfigurationError, PostbackError, TrackerError, postback_url_hint
from .outbox import (
    Claim,
    Outbox,
    OutboxError,
    PostbackRecord,
    RetryPolicy,
    SetAside,
    open_outbox,
)
from .transport import HTTPSession, check_session

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

__all__ = [
    "Conversion",
    "FlushResult",
    "PostbackClient",
    "PostbackRecord",
    "PostbackResult",
    "RetryPolicy",
    "deliver",
    "from_config",
    "report",
    "threads_available",
]

logger = logging.getLogger("flask_keitaro")

#: What :meth:`PostbackClient.postback` did with a conversion.
ReportOutcome = Literal["delivered", "queued", "skipped"]

#: The longest the delivery thread sleeps before looking at the outbox again.
MAX_IDLE = 60.0

_CLIENTS: weakref.WeakSet[PostbackClient] = weakref.WeakSet()


def _after_fork() -> None:
    for client in list(_CLIENTS):
        client._after_fork()


os.register_at_fork(after_in_child=_after_fork)


def threads_available() -> bool:
    """Whether this process can run the delivery thread.

    uWSGI runs no thread of the app's unless started with ``enable-threads`` (or ``threads``);
    then queued conversions wait for ``flask keitaro postbacks flush`` (from cron).
    """
    uwsgi = sys.modules.get("uwsgi")
    if uwsgi is None:
        return True
    options = getattr(uwsgi, "opt", {})

    def on(name: str) -> bool:
        value = options.get(name, options.get(name.encode()))
        return value not in (None, False, b"", "", b"0", "0", 0)

    return on("enable-threads") or on("threads")


@dataclass(frozen=True)
class PostbackResult:
    """What :meth:`PostbackClient.postback` did with one conversion.

    ``outcome`` is ``"delivered"`` (the tracker acknowledged it), ``"queued"`` (it is in the
    outbox and will be retried) or ``"skipped"`` (nothing was stored or sent: the extension
    is switched off, or there was no click to report).
    """

    outcome: ReportOutcome
    conversion: Conversion | None = None
    #: The outbox row, when the conversion is queued.
    id: int | None = None
    #: Why the delivery at once failed, when it did.
    error: TrackerError | None = None
    #: Why nothing was done, when ``outcome`` is ``"skipped"``.
    reason: str | None = None

    @property
    def delivered(self) -> bool:
        """True when the tracker acknowledged the conversion."""
        return self.outcome == "delivered"


@dataclass(frozen=True)
class FlushResult:
    """What :meth:`~flask_keitaro.PostbackClient.flush` did: conversions delivered, and failed."""

    delivered: int
    failed: int


class PostbackClient:
    """Reports conversions to one postback URL, through an outbox so that none is lost.

    :param url: Keitaro's postback URL, ``https://tracker.example.com/<postback key>/postback``.
    :param outbox: where conversions wait: a SQLite file's path (or ``sqlite:///path``), a
        ``postgresql://`` URL, or a SQLAlchemy engine on PostgreSQL; ``None`` sends directly
        (a tracker failure is then a :exc:`~flask_keitaro.PostbackError`).
    :param outbox_engine: an engine the app already has (Flask-SQLAlchemy's ``db.engine``),
        instead of ``outbox``: the outbox is a table in its PostgreSQL database.
    :param timeout: ``(connect, read)`` seconds, as for clicks: the whole delivery has
        their sum.
    :param verify: TLS verification, as ``KEITARO_VERIFY_SSL``: ``None`` (requests' rule:
        the session's ``verify``, ``REQUESTS_CA_BUNDLE``, certifi), ``True`` (certifi),
        ``False`` or a CA bundle path.
    :param session: a :class:`requests.Session`, or a callable making one, whose proxies,
        TLS settings and adapter for the URL the postbacks use (as the extension's
        ``session``).
    :param sender: what signals are sent with (the extension gives the app); the client
        itself by default.
    :param retry: the back-off between delivery attempts.
    :param lease: seconds a process holds a row it sends; more than a delivery can take.
    :param threads: ``False`` never starts the delivery thread (the default: whether
        :func:`~flask_keitaro.postback.threads_available`).
    """

    def __init__(
        self,
        url: str,
        *,
        outbox: str | os.PathLike[str] | Engine | None = None,
        outbox_engine: Engine | None = None,
        timeout: tuple[float, float] = (2.0, 5.0),
        verify: bool | str | None = None,
        sender: Any = None,
        retry: RetryPolicy | None = None,
        lease: float | None = None,
        threads: bool | None = None,
        session: HTTPSession | None = None,
    ) -> None:
        self._url = checked_url(url)
        self._transport = postback_transport(self._url, timeout, verify, check_session(session))
        self.timeout = timeout
        self.verify = verify
        self.sender = self if sender is None else sender
        # A delivery takes at most two connection attempts, each within the timeouts.
        longest = 2 * (timeout[0] + timeout[1])
        if lease is None:
            lease = longest + 30.0
        elif lease <= longest:
            raise ValueError(f"lease: {lease} s is not more than a delivery can take ({longest} s)")
        if outbox_engine is not None:
            if outbox is not None:
                raise ConfigurationError(
                    "outbox_engine", outbox_engine, "give outbox or outbox_engine, not both"
                )
            outbox = outbox_engine
        self.outbox: Outbox | None = None
        if outbox is not None:
            self.outbox = open_outbox(outbox, lease=lease, retry=retry, connect_timeout=timeout[0])
        self.threads = threads_available() if threads is None else threads
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._checked_pending = False
        _CLIENTS.add(self)

    @property
    def masked_url(self) -> str:
        """The postback URL with its key masked, for messages and logs."""
        return postback_url_hint(self._url)

    def __repr__(self) -> str:
        outbox = None if self.outbox is None else self.outbox.name
        return f"<PostbackClient {self.masked_url} outbox={outbox!r}>"

    @postback_method(Conversion.make)
    def postback(self, *args: Any, **kwargs: Any) -> PostbackResult:
        """Report one conversion (arguments as :meth:`Conversion.make`); see :meth:`send`."""
        return self.send(Conversion.make(*args, **kwargs))

    def send(self, conversion: Conversion) -> PostbackResult:
        """Commit ``conversion`` to the outbox, then try to deliver it at once.

        Returns ``delivered`` or ``queued``; a tracker failure never raises. When the outbox
        cannot be written the conversion is sent directly, and only when it can be neither
        stored nor delivered does this raise :exc:`~flask_keitaro.PostbackError`.
        """
        claim = self._store(conversion)
        error = post_fields(self._transport, conversion.fields())
        if error is None:
            record = PostbackRecord(None, conversion, 1, time.time())
            if claim is not None:
                record = claim.record
                self._mark_delivered(claim, self.timeout[0])
                self._check_pending()
            signals.postback_delivered.send(self.sender, postback=record)
            return PostbackResult("delivered", conversion, record.id)
        if claim is None:
            record = PostbackRecord(None, conversion, 1, time.time(), None, str(error))
            signals.postback_failed.send(self.sender, postback=record, error=error)
            raise PostbackError(
                f"the conversion ({conversion.describe()}) could be neither stored nor"
                f" delivered: {error}",
                conversion=conversion,
            ) from error
        record = self._mark_failed(claim, error, self.timeout[0])
        logger.warning(
            "Keitaro postback queued (%s): %s; it will be retried", conversion.describe(), error
        )
        signals.postback_queued.send(self.sender, postback=record, error=error)
        self._start_thread()
        return PostbackResult("queued", conversion, record.id, error)

    def flush(self, *, all_pending: bool = True) -> FlushResult:
        """Try to deliver the outbox's conversions now, once each; back-off waits are ignored.

        Rows another process is sending are left to it. ``all_pending=False`` tries only the
        rows whose back-off is over (what the delivery thread does).
        """
        if self.outbox is None:
            return FlushResult(0, 0)
        delivered = failed = 0
        last = 0
        while not self._closed:
            claim = self.outbox.claim_next(last, all_pending=all_pending)
            if claim is None:
                break
            assert claim.record.id is not None
            last = claim.record.id
            conversion = claim.record.conversion
            error = post_fields(self._transport, conversion.fields())
            if error is None:
                self._mark_delivered(claim)
                delivered += 1
                logger.info(
                    "Keitaro postback delivered from the outbox (%s)", conversion.describe()
                )
                signals.postback_delivered.send(self.sender, postback=claim.record)
            else:
                record = self._mark_failed(claim, error)
                failed += 1
                logger.warning(
                    "Keitaro postback retry %d failed (%s): %s",
                    record.attempts,
                    conversion.describe(),
                    error,
                )
                signals.postback_failed.send(self.sender, postback=record, error=error)
        return FlushResult(delivered, failed)

    def pending(self) -> list[PostbackRecord]:
        """The conversions waiting in the outbox, with attempts and last error (none: empty)."""
        return [] if self.outbox is None else self.outbox.pending()

    def set_aside(self) -> list[SetAside]:
        """The outbox rows that cannot be read back: never sent, kept until dropped."""
        return [] if self.outbox is None else self.outbox.set_aside()

    def drop(self, row_id: int) -> bool:
        """Remove outbox row ``row_id`` without delivering it; ``False`` if there is none."""
        return False if self.outbox is None else self.outbox.drop(row_id)

    def close(self) -> None:
        """Stop the delivery thread and close the pooled connections to the tracker.

        What the outbox holds stays there for the next start.
        """
        self._closed = True
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2 * sum(self.timeout) + 1)
        self._transport.close()
        if self.outbox is not None:
            self.outbox.close()

    def _store(self, conversion: Conversion) -> Claim | None:
        if self.outbox is None:
            return None
        try:
            # On the request path: another process's lock is waited for as long as a
            # connection to the tracker may take, no longer; then the conversion goes directly.
            return self.outbox.add(conversion, wait=self.timeout[0])
        except OutboxError as exc:
            logger.error(
                "Keitaro postback outbox %s cannot be written (%s): sending %s directly",
                self.outbox.name,
                exc,
                conversion.describe(),
            )
            return None

    def _mark_delivered(self, claim: Claim, wait: float | None = None) -> None:
        assert self.outbox is not None
        try:
            self.outbox.delivered(claim, wait=wait)
        except OutboxError as exc:
            # The row stays: it will be sent once more, and Keitaro counts it once.
            logger.error("Keitaro postback outbox: a delivery could not be marked (%s)", exc)

    def _mark_failed(
        self, claim: Claim, error: TrackerError, wait: float | None = None
    ) -> PostbackRecord:
        assert self.outbox is not None
        try:
            return self.outbox.failed(claim, str(error), wait=wait)
        except OutboxError as exc:
            # Its lease runs out and the row is tried again.
            logger.error("Keitaro postback outbox: a failure could not be recorded (%s)", exc)
            return claim.record

    def _check_pending(self) -> None:
        """Once per process, start the thread for what earlier processes left in the outbox."""
        if self._checked_pending or self.outbox is None:
            return
        self._checked_pending = True
        try:
            leftover = self.outbox.count(wait=self.timeout[0])
        except OutboxError:
            return
        if leftover:
            self._start_thread()

    def _start_thread(self) -> None:
        if not self.threads or self.outbox is None or self._closed:
            return
        with self._lock:
            if self._thread is not None:
                self._wake.set()
                return
            self._thread = threading.Thread(target=self._run, name="keitaro-postbacks", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        """The delivery thread: deliver what is due, sleep until the next is, stop when empty."""
        assert self.outbox is not None
        while not self._closed:
            try:
                self.flush(all_pending=False)
                with self._lock:
                    when = self.outbox.next_due()
                    if when is None:
                        self._thread = None
                        return
                    self._wake.clear()
            except Exception as exc:  # the thread must outlive a bad moment of the disk
                shown = exc if isinstance(exc, OutboxError) else type(exc).__name__
                logger.error("Keitaro postback delivery thread: %s", shown)
                when = time.time() + MAX_IDLE
            if self._closed:  # close() may have set the wake-up just before it was cleared
                break
            self._wake.wait(min(max(when - time.time(), 0.01), MAX_IDLE))
        with self._lock:
            self._thread = None

    def _after_fork(self) -> None:
        # Threads do not survive a fork: the child starts its own when it queues a conversion.
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread = None
        self._checked_pending = False


def from_config(
    config: KeitaroConfig, base_dir: str, sender: Any, session: HTTPSession | None = None
) -> PostbackClient | None:
    """The postback client of an app (or a middleware); ``None`` without a postback URL.

    A relative ``KEITARO_POSTBACK_OUTBOX`` path is under ``base_dir`` (the app's instance
    folder). Postbacks take the click path's timeouts, TLS settings and ``session``.
    """
    if config.postback_url is None:
        return None
    return PostbackClient(
        config.postback_url,
        outbox=outbox_target(config.postback_outbox, base_dir),
        timeout=config.timeout,
        verify=config.verify_ssl,
        sender=sender,
        session=session,
    )


def report(
    client: PostbackClient | None,
    enabled: bool,
    sub_id: str | None,
    status: str = "lead",
    *,
    of_click: bool = False,
    **options: Any,
) -> PostbackResult:
    """The one way a door (the extension, the middleware, a click) reports a conversion.

    The arguments are checked first (``ValueError``), whatever else holds. Then: switched off
    (``KEITARO_ENABLED = False``) is ``skipped``; a click that did not happen (``of_click``
    with no ``sub_id``: the tracker was down) is ``skipped`` and logged; no postback URL is a
    :exc:`~flask_keitaro.ConfigurationError`; otherwise :meth:`PostbackClient.send`.
    """
    missing = of_click and sub_id is None
    # A missing click's arguments are checked too, with a stand-in sub_id.
    given: Any = "-" if missing else sub_id
    conversion = Conversion.make(given, status, **options)
    if not enabled:
        return PostbackResult("skipped", conversion, reason="KEITARO_ENABLED is False")
    if missing:
        logger.warning("Keitaro postback skipped: the request has no click (%s)", status)
        return PostbackResult("skipped", None, reason="the request has no click")
    if client is None:
        raise ConfigurationError(
            "KEITARO_POSTBACK_URL",
            None,
            "is needed to send postbacks: the URL Keitaro shows under Maintenance -> Postback"
            " URL, https://tracker.example.com/<postback key>/postback",
        )
    return client.send(conversion)
