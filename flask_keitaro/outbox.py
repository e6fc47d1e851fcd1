"""The postback outbox: each conversion committed until the tracker has it, on any storage.

:class:`Outbox` is the interface and the logic every storage shares: claiming a row (a lease,
so that two processes never send the same one), the back-off after a failure, and reading a
row back — a row that cannot be read (corrupted, edited by hand, written by another version)
is set aside with its error, shown by ``postbacks list`` and removed by ``drop``, and the rows
behind it go on. A storage supplies one transaction's statements (:class:`Store`):
:class:`~flask_keitaro.outbox_sqlite.SQLiteOutbox` (a file, stdlib ``sqlite3``) and
:class:`~flask_keitaro.outbox_postgres.PostgresOutbox` (a PostgreSQL table, SQLAlchemy Core).
:func:`open_outbox` picks one from ``KEITARO_POSTBACK_OUTBOX``. No row holds a postback URL.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol, TypeVar

from .conversion import Conversion
from .errors import OutboxError

logger = logging.getLogger("flask_keitaro")

#: The most conversions an outbox holds; past that a new one is sent without being stored.
MAX_PENDING = 100_000

#: The longest ``last_error`` (and set-aside reason) kept for a row.
MAX_ERROR_LENGTH = 200

#: How long an operation off the request path waits for another process's lock.
WAIT = 10.0

#: How much of a set-aside row ``postbacks list`` shows.
SHOWN_LENGTH = 120

T = TypeVar("T")

#: A row as a storage reads it: id, fields, created, attempts, next_attempt, last_error,
#: claim_until, set_aside. Values are whatever the storage holds: checked by :func:`decode`.
Row = tuple[Any, ...]


@dataclass(frozen=True)
class RetryPolicy:
    """When an undelivered conversion is tried again: exponential back-off, capped, jittered.

    After the ``n``-th failed attempt the wait is ``base * 2 ** (n - 1)`` seconds, at most
    ``cap``, and then a random 50-100 % of that, so that processes retrying together spread out.
    """

    base: float = 10.0
    cap: float = 900.0

    def __post_init__(self) -> None:
        if not 0 < self.base <= self.cap:
            raise ValueError(f"retry: need 0 < base <= cap, not base={self.base}, cap={self.cap}")

    def delay(self, attempts: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait after ``attempts`` failed attempts (``rand`` gives 0 <= x < 1)."""
        full = min(self.cap, self.base * 2.0 ** min(max(attempts, 1) - 1, 64))
        return float(full * (0.5 + 0.5 * rand()))


@dataclass(frozen=True)
class PostbackRecord:
    """A conversion as the outbox holds it, and as signals and ``postbacks list`` show it.

    ``id`` is ``None`` for a conversion that was never stored (sent directly).
    """

    id: int | None
    conversion: Conversion
    attempts: int = 0
    created: float = 0.0
    #: When the next delivery attempt is due (Unix time); ``None`` once delivered.
    next_attempt: float | None = None
    #: Why the last attempt failed (our own words: never a URL).
    last_error: str | None = None
    #: Unix time until which a process holds the row to send it, if one does.
    claimed_until: float | None = None


@dataclass(frozen=True)
class SetAside:
    """An outbox row that cannot be read back as a conversion: never sent, kept until dropped.

    ``error`` says why; ``stored`` is the start of what the row holds, for a person to judge
    (``flask keitaro postbacks drop ID`` removes it; clearing its ``set_aside`` column in the
    database lets a corrected row be sent).
    """

    id: int
    error: str
    stored: str


@dataclass(frozen=True)
class Claim:
    """A row this process holds to send: ``record`` and the lease's ``token``."""

    record: PostbackRecord
    token: str


class Unreadable(Exception):
    """A row that cannot be read back; the message says why."""


def encode(conversion: Conversion) -> str:
    """The ``fields`` column of a conversion: its postback fields as a JSON object."""
    return json.dumps(dict(conversion.fields()), ensure_ascii=False)


def _number(name: str, value: object, *, optional: bool = False) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise Unreadable(f"{name} is {_cut(repr(value))}, not a number")
    return float(value)


def decode(row: Row) -> PostbackRecord:
    """The record a row holds, every column checked; :exc:`Unreadable` says what is wrong."""
    row_id, fields, created, attempts, next_attempt, last_error, claim_until, set_aside = row
    if set_aside is not None:
        raise Unreadable(str(set_aside))
    if not isinstance(fields, str):
        raise Unreadable(f"fields is {type(fields).__name__}, not text")
    try:
        given = json.loads(fields)
        if not isinstance(given, Mapping):
            raise ValueError(f"the fields are a JSON {type(given).__name__}, not an object")
        conversion = Conversion.from_fields(given)
        encode(conversion).encode("utf-8")  # a lone surrogate could never be sent
    except RecursionError:
        raise Unreadable("fields: nested too deeply") from None
    except (ValueError, TypeError) as exc:  # JSONDecodeError, UnicodeError: ValueErrors
        raise Unreadable(f"fields: {exc}") from None
    if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 0:
        raise Unreadable(f"attempts is {_cut(repr(attempts))}, not a count")
    if last_error is not None and not isinstance(last_error, str):
        raise Unreadable(f"last_error is {type(last_error).__name__}, not text")
    return PostbackRecord(
        int(row_id),
        conversion,
        attempts,
        _number("created", created) or 0.0,
        _number("next_attempt", next_attempt),
        last_error,
        _number("claim_until", claim_until, optional=True),
    )


def listed(row: Row) -> PostbackRecord | SetAside:
    """What ``postbacks list`` shows of a row: its record, or why it is set aside."""
    try:
        return decode(row)
    except Unreadable as exc:
        return SetAside(int(row[0]), _cut(str(exc), MAX_ERROR_LENGTH), _cut(repr(row[1])))


def _cut(text: str, length: int = SHOWN_LENGTH) -> str:
    return text if len(text) <= length else text[: length - 3] + "..."


class Store(Protocol):
    """The statements of one transaction on an outbox's rows, as a storage runs them."""

    def now(self) -> float:
        """Unix time, by the clock every process of this outbox shares."""

    def total(self) -> int:
        """How many rows there are, set aside or not."""

    def insert(self, fields: str, created: float, claim: str, claim_until: float) -> int:
        """Add a row claimed by ``claim`` with one attempt; its id."""

    def next_row(self, after: int, horizon: float, now: float) -> Row | None:
        """The first row past ``after``, not set aside, due by ``horizon``, unclaimed at
        ``now`` (a value of the wrong type counts as due: reading it sets it aside), held
        by this transaction until it ends."""

    def take(self, row_id: int, claim: str, claim_until: float) -> None:
        """Claim the row and count an attempt."""

    def set_aside(self, row_id: int, error: str) -> None:
        """Mark the row as one that cannot be read, with why."""

    def delete(self, row_id: int, claim: str | None) -> bool:
        """Delete the row (only while ``claim`` holds it, unless ``None``); whether it was."""

    def release(self, row_id: int, claim: str, error: str, next_attempt: float) -> None:
        """Let go of the claimed row after a failed attempt."""

    def rows(self, limit: int) -> list[Row]:
        """The first ``limit`` rows by id, set aside or not."""

    def waiting(self) -> int:
        """How many rows are not set aside."""

    def next_due(self) -> object:
        """The least ``max(next_attempt, claim_until)`` of the rows not set aside, or None."""


class Outbox(ABC):
    """The conversions of one outbox, shared by every process (and host) that opens it.

    :param lease: seconds a claimed row is held; longer than a delivery can take.
    :param retry: the back-off between attempts.
    :param max_pending: the most rows it holds.
    :param wait: seconds an operation waits for another process's lock; the request path
        passes its own, shorter ``wait`` (the click's connect timeout).
    """

    def __init__(
        self,
        *,
        lease: float,
        retry: RetryPolicy | None = None,
        max_pending: int = MAX_PENDING,
        wait: float = WAIT,
    ) -> None:
        self.lease = lease
        self.retry = retry or RetryPolicy()
        self.max_pending = max_pending
        self.wait = wait

    @property
    @abstractmethod
    def name(self) -> str:
        """The outbox as logs and the CLI show it: a path, or a URL without its password."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"

    @abstractmethod
    def _run(
        self, work: Callable[[Store], T], *, wait: float, write: bool, create: bool = False
    ) -> T | None:
        """``work`` in one transaction (``write``: one that will write); its result.

        ``None`` without running it when the outbox does not exist yet, unless ``create``
        (only a conversion to store creates it). Every failure is an
        :exc:`~flask_keitaro.OutboxError`.
        """

    def add(self, conversion: Conversion, *, wait: float | None = None) -> Claim:
        """Commit ``conversion``, claimed by the caller, who sends it at once.

        Raise :exc:`~flask_keitaro.OutboxError` when it cannot be stored (the caller then
        sends directly).
        """
        fields = encode(conversion)

        def work(store: Store) -> PostbackRecord:
            count = store.total()
            if count >= self.max_pending:
                raise OutboxError(f"the outbox holds {count} conversions already (full)")
            now = store.now()
            row_id = store.insert(fields, now, token, now + self.lease)
            return PostbackRecord(row_id, conversion, 1, now, now, claimed_until=now + self.lease)

        token = _claim_token()
        record = self._run(work, wait=self._wait(wait), write=True, create=True)
        assert record is not None
        return Claim(record, token)

    def claim_next(self, after: int = 0, *, all_pending: bool = False) -> Claim | None:
        """Take the first row past id ``after`` that is due and unclaimed, to send it.

        With ``all_pending`` a row is taken whether its back-off is over or not. The look-up,
        the claim and the attempt count are one transaction: of several processes asking at
        once, each gets another row. A row met on the way that cannot be read is set aside
        (and logged), and the look-up goes on past it. ``None`` when no row is left.
        """
        set_aside: list[tuple[int, str]] = []

        def work(store: Store) -> Claim | None:
            set_aside.clear()  # the transaction may be run again
            now = store.now()
            horizon = math.inf if all_pending else now
            position = after
            while (row := store.next_row(position, horizon, now)) is not None:
                position = int(row[0])
                try:
                    record = decode(row)
                except Unreadable as exc:
                    reason = _cut(str(exc), MAX_ERROR_LENGTH)
                    store.set_aside(position, reason)
                    set_aside.append((position, reason))
                    continue
                token = _claim_token()
                store.take(position, token, now + self.lease)
                held = replace(record, attempts=record.attempts + 1, claimed_until=now + self.lease)
                return Claim(held, token)
            return None

        claim = self._run(work, wait=self.wait, write=True)
        for row_id, reason in set_aside:
            logger.error(
                "Keitaro postback outbox %s: row #%d cannot be read (%s); it is set aside"
                " (flask keitaro postbacks list, drop) and the rows behind it go on",
                self.name,
                row_id,
                reason,
            )
        return claim

    def delivered(self, claim: Claim, *, wait: float | None = None) -> bool:
        """Delete the claimed row: the tracker has it. ``False`` if the claim was lost."""
        row_id = claim.record.id
        assert row_id is not None
        done = self._run(
            lambda store: store.delete(row_id, claim.token), wait=self._wait(wait), write=True
        )
        return bool(done)

    def failed(self, claim: Claim, error: str, *, wait: float | None = None) -> PostbackRecord:
        """Release the claimed row after a failed attempt, due again after the back-off."""
        record = claim.record
        assert record.id is not None
        row_id = record.id
        error = error[:MAX_ERROR_LENGTH]
        delay = self.retry.delay(record.attempts)

        def work(store: Store) -> float:
            next_attempt = store.now() + delay
            store.release(row_id, claim.token, error, next_attempt)
            return next_attempt

        next_attempt = self._run(work, wait=self._wait(wait), write=True)
        return PostbackRecord(
            record.id, record.conversion, record.attempts, record.created, next_attempt, error
        )

    def listing(self, limit: int = 1000) -> list[PostbackRecord | SetAside]:
        """The first ``limit`` rows, oldest first: each a record, or why it is set aside."""
        rows = self._run(lambda store: store.rows(limit), wait=self.wait, write=False)
        return [listed(row) for row in rows or ()]

    def pending(self, limit: int = 1000) -> list[PostbackRecord]:
        """The conversions not delivered yet, oldest first (rows set aside left out)."""
        return [item for item in self.listing(limit) if isinstance(item, PostbackRecord)]

    def set_aside(self, limit: int = 1000) -> list[SetAside]:
        """The rows that cannot be read: kept, never sent, until dropped."""
        return [item for item in self.listing(limit) if isinstance(item, SetAside)]

    def count(self, *, wait: float | None = None) -> int:
        """How many conversions are waiting to be delivered (rows set aside left out)."""
        count = self._run(lambda store: store.waiting(), wait=self._wait(wait), write=False)
        return count or 0

    def next_due(self) -> float | None:
        """When the next row may be tried (Unix time), or ``None`` when none waits."""

        def work(store: Store) -> float | None:
            when = store.next_due()
            if when is None:
                return None
            if isinstance(when, bool) or not isinstance(when, int | float):
                return store.now()  # a value of the wrong type: due, so that it is set aside
            return float(when)

        return self._run(work, wait=self.wait, write=False)

    def drop(self, row_id: int) -> bool:
        """Remove row ``row_id`` (set aside or not) without delivering it; ``False`` if none."""
        done = self._run(lambda store: store.delete(row_id, None), wait=self.wait, write=True)
        return bool(done)

    def close(self) -> None:  # noqa: B027 (a storage with nothing held open needs no close)
        """Let go of what the outbox holds open (connections it made); its rows stay."""

    def _wait(self, wait: float | None) -> float:
        return self.wait if wait is None else min(wait, self.wait)


def _claim_token() -> str:
    return f"{os.getpid()}-{uuid.uuid4().hex}"


def open_outbox(
    target: object,
    *,
    lease: float,
    retry: RetryPolicy | None = None,
    wait: float = WAIT,
    connect_timeout: float = 2.0,
) -> Outbox:
    """The outbox ``target`` names: a path or ``sqlite:///path`` (a SQLite file), a
    ``postgresql://`` URL, or a SQLAlchemy ``Engine`` (a PostgreSQL table).

    ``connect_timeout`` bounds connecting to a database server (of an engine made here).
    """
    from .config import outbox_kind

    kind, where = outbox_kind("outbox", target)
    if kind == "sqlite":
        from .outbox_sqlite import SQLiteOutbox

        assert isinstance(where, str)
        return SQLiteOutbox(where, lease=lease, retry=retry, wait=wait)
    try:
        from .outbox_postgres import PostgresOutbox
    except ImportError:
        raise OutboxError(
            'a PostgreSQL outbox needs SQLAlchemy and psycopg: pip install ".[postgres]"'
        ) from None
    return PostgresOutbox(
        where, lease=lease, retry=retry, wait=wait, connect_timeout=connect_timeout
    )


__all__ = [
    "MAX_PENDING",
    "Claim",
    "Outbox",
    "OutboxError",
    "PostbackRecord",
    "RetryPolicy",
    "SetAside",
    "Store",
    "open_outbox",
]
