"""The outbox in a PostgreSQL table, on SQLAlchemy Core: for the processes of several hosts.

Every process of every host opens the same table (:data:`TABLE`). A row is claimed with
``SELECT ... FOR UPDATE SKIP LOCKED`` and a lease, in one transaction, so two workers never
send the same row at once; a killed worker's lease runs out and the row is sent once more.
Times are the database server's clock (``clock_timestamp()``), so the hosts' clocks need not
agree. The table is made by the first conversion stored; reading makes nothing.

Needs the ``postgres`` extra (SQLAlchemy and psycopg). Neither the database password nor a
postback key is ever in a message, a log line, a repr or a row.
"""

from __future__ import annotations

import math
import os
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import (
    BigInteger,
    Column,
    Double,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    create_engine,
    delete,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import SQLAlchemyError

from .errors import OutboxError, hide_user_info
from .outbox import MAX_PENDING, WAIT, Outbox, RetryPolicy, Row, Store

T = TypeVar("T")

#: The outbox's table (in the connection's ``search_path``).
TABLE = "keitaro_postbacks"

metadata = MetaData()

#: The table, as :data:`SCHEMA` makes it.
postbacks = Table(
    TABLE,
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("fields", Text, nullable=False),
    Column("created", Double, nullable=False),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("next_attempt", Double, nullable=False),
    Column("last_error", Text),
    Column("claim", Text),
    Column("claim_until", Double),
    Column("set_aside", Text),
)
Index(f"{TABLE}_due", postbacks.c.next_attempt, postgresql_where=postbacks.c.set_aside.is_(None))

_COLUMNS = (
    postbacks.c.id,
    postbacks.c.fields,
    postbacks.c.created,
    postbacks.c.attempts,
    postbacks.c.next_attempt,
    postbacks.c.last_error,
    postbacks.c.claim_until,
    postbacks.c.set_aside,
)

# Held while the table is made, so that processes starting together do not race to make it.
_CREATE_LOCK = 0x6B65_6974_6172_6F  # "keitaro"

#: Connections one process keeps to the database (an engine made from a URL).
POOL_SIZE = 4


class _Statements:
    """:class:`~flask_keitaro.outbox.Store` on one SQLAlchemy connection in a transaction."""

    def __init__(self, conn: Connection, wait: float) -> None:
        self.conn = conn
        # Bound every lock wait and statement of this transaction, and read the server's clock.
        milliseconds = str(max(1, math.ceil(wait * 1000)))
        self._now = float(
            conn.execute(
                text(
                    "SELECT set_config('lock_timeout', :ms, true),"
                    " set_config('statement_timeout', :ms, true),"
                    " extract(epoch FROM clock_timestamp())"
                ),
                {"ms": milliseconds},
            ).one()[2]
        )

    def now(self) -> float:
        return self._now

    def total(self) -> int:
        return int(self.conn.scalar(select(func.count()).select_from(postbacks)) or 0)

    def insert(self, fields: str, created: float, claim: str, claim_until: float) -> int:
        row_id = self.conn.scalar(
            insert(postbacks)
            .values(
                fields=fields,
                created=created,
                attempts=1,
                next_attempt=created,
                claim=claim,
                claim_until=claim_until,
            )
            .returning(postbacks.c.id)
        )
        assert row_id is not None
        return int(row_id)

    def next_row(self, after: int, horizon: float, now: float) -> Row | None:
        row = self.conn.execute(
            select(*_COLUMNS)
            .where(
                postbacks.c.id > after,
                postbacks.c.set_aside.is_(None),
                postbacks.c.next_attempt <= horizon,
                or_(postbacks.c.claim_until.is_(None), postbacks.c.claim_until <= now),
            )
            .order_by(postbacks.c.id)
            .limit(1)
            .with_for_update(skip_locked=True)
        ).first()
        return None if row is None else tuple(row)

    def take(self, row_id: int, claim: str, claim_until: float) -> None:
        self.conn.execute(
            update(postbacks)
            .where(postbacks.c.id == row_id)
            .values(claim=claim, claim_until=claim_until, attempts=postbacks.c.attempts + 1)
        )

    def set_aside(self, row_id: int, error: str) -> None:
        self.conn.execute(
            update(postbacks)
            .where(postbacks.c.id == row_id)
            .values(set_aside=error, claim=None, claim_until=None)
        )

    def delete(self, row_id: int, claim: str | None) -> bool:
        statement = delete(postbacks).where(postbacks.c.id == row_id)
        if claim is not None:
            statement = statement.where(postbacks.c.claim == claim)
        return self.conn.execute(statement).rowcount == 1

    def release(self, row_id: int, claim: str, error: str, next_attempt: float) -> None:
        self.conn.execute(
            update(postbacks)
            .where(postbacks.c.id == row_id, postbacks.c.claim == claim)
            .values(claim=None, claim_until=None, last_error=error, next_attempt=next_attempt)
        )

    def rows(self, limit: int) -> list[Row]:
        found = self.conn.execute(select(*_COLUMNS).order_by(postbacks.c.id).limit(limit))
        return [tuple(row) for row in found]

    def waiting(self) -> int:
        count = select(func.count()).select_from(postbacks).where(postbacks.c.set_aside.is_(None))
        return int(self.conn.scalar(count) or 0)

    def next_due(self) -> object:
        due = func.greatest(postbacks.c.next_attempt, func.coalesce(postbacks.c.claim_until, 0))
        return self.conn.scalar(select(func.min(due)).where(postbacks.c.set_aside.is_(None)))


def database_url(url: str) -> URL:
    """``url`` as SQLAlchemy's URL, on psycopg (3) when it names no driver.

    Raises :exc:`~flask_keitaro.OutboxError` for a URL that is not one, without its password.
    """
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    try:
        parsed = make_url(url)
    except (SQLAlchemyError, ValueError):
        raise OutboxError(f"{hide_user_info(url)!r} is not a database URL") from None
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


_OUTBOXES: weakref.WeakSet[PostgresOutbox] = weakref.WeakSet()


def _after_fork() -> None:
    # The parent's connections are not this process's: let go of them without closing them.
    for outbox in list(_OUTBOXES):
        outbox.engine.dispose(close=False)


os.register_at_fork(after_in_child=_after_fork)


class PostgresOutbox(Outbox):
    """The outbox in a PostgreSQL table, shared by every process of every host.

    :param database: a ``postgresql://user:password@host/db`` URL (an engine is made, with
        ``POOL_SIZE`` connections, pre-ping, and ``connect_timeout``), or an engine the
        app already has (its own pool and connect settings apply).
    :param lease: seconds a claimed row is held; longer than a delivery can take.
    :param retry: the back-off between attempts.
    :param wait: seconds an operation may wait for a lock or a statement.
    :param connect_timeout: seconds for connecting and for a pooled connection (an engine made
        here; libpq takes whole seconds, at least 2).
    """

    def __init__(
        self,
        database: str | Engine,
        *,
        lease: float,
        retry: RetryPolicy | None = None,
        max_pending: int = MAX_PENDING,
        wait: float = WAIT,
        connect_timeout: float = 2.0,
    ) -> None:
        super().__init__(lease=lease, retry=retry, max_pending=max_pending, wait=wait)
        self._own_engine = not isinstance(database, Engine)
        if isinstance(database, Engine):
            self.engine = database
        else:
            url = database_url(database)
            options: dict[str, Any] = {}
            if "connect_timeout" not in url.query:
                options["connect_timeout"] = max(2, math.ceil(connect_timeout))
            try:
                self.engine = create_engine(
                    url,
                    pool_size=POOL_SIZE,
                    max_overflow=POOL_SIZE,
                    pool_timeout=connect_timeout,
                    pool_pre_ping=True,
                    connect_args=options,
                )
            except (SQLAlchemyError, ImportError) as exc:
                raise OutboxError(
                    f"the outbox {url.render_as_string(hide_password=True)} cannot be used"
                    f" ({type(exc).__name__}): the PostgreSQL outbox needs SQLAlchemy and"
                    ' psycopg, pip install ".[postgres]"'
                ) from None
        self._password = self.engine.url.password
        self._ready_in: int | None = None  # the process that saw the table
        _OUTBOXES.add(self)

    @property
    def name(self) -> str:
        """The database URL, its password hidden."""
        return self.engine.url.render_as_string(hide_password=True)

    def close(self) -> None:
        """Close the connections of an engine made here (a handed-over one is the app's)."""
        if self._own_engine:
            self.engine.dispose()

    def _run(
        self, work: Callable[[Store], T], *, wait: float, write: bool, create: bool = False
    ) -> T | None:
        try:
            with self.engine.begin() as conn:
                statements = _Statements(conn, wait)
                if self._ready_in != os.getpid():
                    if create:
                        conn.execute(select(func.pg_advisory_xact_lock(_CREATE_LOCK)))
                        metadata.create_all(conn, checkfirst=True)
                    elif conn.scalar(select(func.to_regclass(TABLE))) is None:
                        return None  # nothing was ever stored: reading makes nothing
                    self._ready_in = os.getpid()
                return work(statements)
        except SQLAlchemyError as exc:
            # Made without a cause: the driver's own text is cut to its first line, and
            # the password taken out of it.
            raise OutboxError(
                f"the outbox {self.name} cannot be used ({self._said(exc)})"
            ) from None

    def _said(self, exc: SQLAlchemyError) -> str:
        cause = getattr(exc, "orig", None) or exc
        detail = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
        detail = hide_user_info(detail)
        if self._password:
            detail = detail.replace(str(self._password), "***")
        return f"{type(cause).__name__}: {detail}" if detail else type(cause).__name__
