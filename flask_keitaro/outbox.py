"""The postback outbox: each conversion committed to a SQLite file until the tracker has it.

Stdlib ``sqlite3`` in WAL mode. A connection is opened for each operation and closed after
it, so nothing here outlives a fork or crosses a thread. Several processes may share one
file: a row is claimed (a lease, taken in one ``UPDATE``) before it is sent, and deleted by
its claim once the tracker acknowledged it, so two processes never send the same row. A
process killed between the send and the delete leaves its lease to run out; the row is then
sent once more. The file holds no postback URL, so no postback key.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from .conversion import Conversion
from .errors import OutboxError

#: The most conversions an outbox holds; past that a new one is sent without being stored.
MAX_PENDING = 100_000

#: The longest ``last_error`` kept for a row.
MAX_ERROR_LENGTH = 200

# How long an operation waits for another process's write lock before giving up.
_BUSY_TIMEOUT = 10.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS postbacks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    fields TEXT NOT NULL,
    created REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL,
    last_error TEXT,
    claim TEXT,
    claim_until REAL
);
CREATE INDEX IF NOT EXISTS postbacks_next_attempt ON postbacks (next_attempt);
"""

_COLUMNS = "id, fields, created, attempts, next_attempt, last_error, claim_until"


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
class Claim:
    """A row this process holds to send: ``record`` and the lease's ``token``."""

    record: PostbackRecord
    token: str


class Outbox:
    """The conversions of one SQLite file, shared by every process that opens it.

    :param path: the SQLite file (created with its directory on the first write).
    :param lease: seconds a claimed row is held; longer than a delivery can take.
    :param retry: the back-off between attempts.
    :param clock: Unix time (shared by processes; replaceable in tests).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        lease: float,
        retry: RetryPolicy | None = None,
        max_pending: int = MAX_PENDING,
        clock: Callable[[], float] = time.time,
    ) -> None:
        try:
            self.path = os.fspath(path)
        except TypeError:
            kind = type(path).__name__
            raise OutboxError(f"an outbox path must be a string, not {kind}") from None
        if not self.path.strip() or "\0" in self.path:
            raise OutboxError(f"{self.path!r} is not a path for the outbox file")
        self.lease = lease
        self.retry = retry or RetryPolicy()
        self.max_pending = max_pending
        self._clock = clock
        self._ready_in: int | None = None  # the process that made sure of the schema

    def __repr__(self) -> str:
        return f"<Outbox {self.path!r}>"

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """One connection for one operation, in autocommit mode; every failure an OutboxError."""
        try:
            if self._ready_in != os.getpid():
                directory = os.path.dirname(os.path.abspath(self.path))
                os.makedirs(directory, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise OutboxError(f"cannot open the outbox ({type(exc).__name__}: {exc})") from exc
        try:
            if self._ready_in != os.getpid():
                db.execute("PRAGMA journal_mode=WAL")
                db.executescript(_SCHEMA)
                self._ready_in = os.getpid()
            yield db
        except sqlite3.Error as exc:
            raise OutboxError(f"outbox {type(exc).__name__}: {exc}") from exc
        finally:
            db.close()

    def add(self, conversion: Conversion) -> Claim:
        """Commit ``conversion``, claimed by the caller, who sends it at once.

        Raise :exc:`OutboxError` when it cannot be stored (the caller then sends directly).
        """
        now = self._clock()
        token = _claim_token()
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                (count,) = db.execute("SELECT count(*) FROM postbacks").fetchone()
                if count >= self.max_pending:
                    raise OutboxError(f"the outbox holds {count} conversions already (full)")
                cursor = db.execute(
                    "INSERT INTO postbacks (fields, created, attempts, next_attempt, claim,"
                    " claim_until) VALUES (?, ?, 1, ?, ?, ?)",
                    (json.dumps(conversion.fields()), now, now, token, now + self.lease),
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        record = PostbackRecord(
            cursor.lastrowid, conversion, 1, now, now, claimed_until=now + self.lease
        )
        return Claim(record, token)

    def claim_next(self, after: int = 0, *, all_pending: bool = False) -> Claim | None:
        """Take the first row past id ``after`` that is due and unclaimed, to send it.

        With ``all_pending`` a row is taken whether its back-off is over or not. The look-up,
        the claim and the attempt count are one transaction: of several processes asking at
        once, each gets another row. ``None`` when no row is left.
        """
        now = self._clock()
        horizon = float("inf") if all_pending else now
        token = _claim_token()
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                found = db.execute(
                    "SELECT min(id) FROM postbacks WHERE id > ? AND next_attempt <= ?"
                    " AND (claim_until IS NULL OR claim_until <= ?)",
                    (after, horizon, now),
                ).fetchone()[0]
                if found is not None:
                    db.execute(
                        "UPDATE postbacks SET claim = ?, claim_until = ?,"
                        " attempts = attempts + 1 WHERE id = ?",
                        (token, now + self.lease, found),
                    )
                    row = db.execute(
                        f"SELECT {_COLUMNS} FROM postbacks WHERE id = ?", (found,)
                    ).fetchone()
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return None if found is None else Claim(_record(row), token)

    def delivered(self, claim: Claim) -> bool:
        """Delete the claimed row: the tracker has it. ``False`` if the claim was lost."""
        with self._connect() as db:
            cursor = db.execute(
                "DELETE FROM postbacks WHERE id = ? AND claim = ?", (claim.record.id, claim.token)
            )
        return cursor.rowcount == 1

    def failed(self, claim: Claim, error: str) -> PostbackRecord:
        """Release the claimed row after a failed attempt, due again after the back-off."""
        record = claim.record
        next_attempt = self._clock() + self.retry.delay(record.attempts)
        error = error[:MAX_ERROR_LENGTH]
        with self._connect() as db:
            db.execute(
                "UPDATE postbacks SET claim = NULL, claim_until = NULL, last_error = ?,"
                " next_attempt = ? WHERE id = ? AND claim = ?",
                (error, next_attempt, record.id, claim.token),
            )
        return PostbackRecord(
            record.id, record.conversion, record.attempts, record.created, next_attempt, error
        )

    def pending(self, limit: int = 1000) -> list[PostbackRecord]:
        """The conversions not delivered yet, oldest first."""
        with self._connect() as db:
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM postbacks ORDER BY id LIMIT ?", (limit,)
            ).fetchall()
        return [_record(row) for row in rows]

    def count(self) -> int:
        """How many conversions are not delivered yet."""
        with self._connect() as db:
            (count,) = db.execute("SELECT count(*) FROM postbacks").fetchone()
        return int(count)

    def next_due(self) -> float | None:
        """When the next row may be tried (Unix time), or ``None`` when the outbox is empty."""
        with self._connect() as db:
            (when,) = db.execute(
                "SELECT min(max(next_attempt, coalesce(claim_until, 0))) FROM postbacks"
            ).fetchone()
        return None if when is None else float(when)

    def drop(self, row_id: int) -> bool:
        """Remove row ``row_id`` without delivering it; ``False`` if there is none."""
        with self._connect() as db:
            cursor = db.execute("DELETE FROM postbacks WHERE id = ?", (row_id,))
        return cursor.rowcount == 1


def _claim_token() -> str:
    return f"{os.getpid()}-{uuid.uuid4().hex}"


def _record(row: tuple[int, str, float, int, float, str | None, float | None]) -> PostbackRecord:
    row_id, fields, created, attempts, next_attempt, last_error, claim_until = row
    conversion = Conversion.from_fields(json.loads(fields))
    return PostbackRecord(
        row_id, conversion, attempts, created, next_attempt, last_error, claim_until
    )
