"""The click log: clicks, offer clicks, conversions and received postbacks in SQLite (stdlib).

One connection shared by all server threads behind a lock: SQLite serialises
writers anyway, a ``:memory:`` database exists only inside its one connection,
and a statement under a lock can never interleave with another thread's.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Mapping
from typing import Any

#: Columns of the ``clicks`` table, in order (``params`` is the received fields as JSON).
CLICK_COLUMNS = (
    "time",
    "sub_id",
    "campaign_id",
    "stream_id",
    "landing_id",
    "offer_id",
    "action",
    "status",
    "ip",
    "country",
    "language",
    "user_agent",
    "referrer",
    "keyword",
    "source",
    "external_id",
    "x_requested_with",
    "is_bot",
    "unique_campaign",
    "unique_stream",
    "unique_global",
    "params",
)
OFFER_CLICK_COLUMNS = (
    "time",
    "sub_id",
    "campaign_id",
    "stream_id",
    "landing_id",
    "offer_id",
    "url",
)
CONVERSION_COLUMNS = (
    "time",
    "updated",
    "sub_id",
    "campaign_id",
    "stream_id",
    "landing_id",
    "offer_id",
    "status",
    "original_status",
    "tid",
    "payout",
    "cost",
    "currency",
    "params",
    "history",
)
#: Columns of ``postbacks``: every postback received, whatever it did (Keitaro's
#: "Received postbacks" log); ``result`` says what (``created``, ``not_found``...), and
#: ``landing_id`` is the landing of the click it names (``None`` when there is none).
POSTBACK_COLUMNS = (
    "time",
    "sub_id",
    "landing_id",
    "status",
    "result",
    "message",
    "conversion_id",
    "params",
)
#: Columns that hold JSON.
_JSON_COLUMNS = ("params", "history")
_BOOL_COLUMNS = ("is_bot", "unique_campaign", "unique_stream", "unique_global")

#: Version of the tables below, kept in the file's ``user_version``.
SCHEMA_VERSION = 3

_SCHEMA = """
CREATE TABLE IF NOT EXISTS clicks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL, sub_id TEXT NOT NULL UNIQUE, campaign_id INTEGER NOT NULL,
    stream_id INTEGER, landing_id INTEGER, offer_id INTEGER, action TEXT, status INTEGER,
    ip TEXT, country TEXT, language TEXT, user_agent TEXT, referrer TEXT, keyword TEXT,
    source TEXT, external_id TEXT, x_requested_with TEXT, is_bot INTEGER NOT NULL,
    unique_campaign INTEGER NOT NULL, unique_stream INTEGER NOT NULL,
    unique_global INTEGER NOT NULL, params TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS clicks_stream_time ON clicks (stream_id, time);
CREATE TABLE IF NOT EXISTS offer_clicks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL, sub_id TEXT NOT NULL, campaign_id INTEGER NOT NULL,
    stream_id INTEGER, landing_id INTEGER, offer_id INTEGER NOT NULL, url TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS conversions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL, updated REAL NOT NULL, sub_id TEXT NOT NULL,
    campaign_id INTEGER NOT NULL, stream_id INTEGER, landing_id INTEGER, offer_id INTEGER,
    status TEXT NOT NULL,
    original_status TEXT NOT NULL, tid TEXT, payout TEXT NOT NULL, cost TEXT, currency TEXT,
    params TEXT NOT NULL, history TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS conversions_sub_id ON conversions (sub_id);
CREATE TABLE IF NOT EXISTS postbacks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL, sub_id TEXT NOT NULL, landing_id INTEGER, status TEXT NOT NULL,
    result TEXT NOT NULL,
    message TEXT NOT NULL, conversion_id INTEGER, params TEXT NOT NULL
);
"""


class ClickStore:
    """Thread-safe access to the click log at ``path`` (``":memory:"`` keeps nothing)."""

    def __init__(self, path: str = ":memory:") -> None:
        self.path = path
        self._lock = threading.Lock()
        # Autocommit: every write is one statement, so each is its own transaction.
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        if path != ":memory:":
            # WAL without a sync per commit keeps a click well under a millisecond on disk.
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        try:
            self._create_schema()
        except BaseException:
            self._db.close()
            raise

    def _create_schema(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        tables = self._db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0]
        if version != SCHEMA_VERSION and (version or tables):
            raise sqlite3.DatabaseError(
                f"it holds another version of the click log (schema {version}, "
                f"this emulator writes {SCHEMA_VERSION}): delete it or name another file"
            )
        self._db.executescript(_SCHEMA + f"PRAGMA user_version = {SCHEMA_VERSION};")

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._db.close()

    def add_click(self, row: Mapping[str, Any]) -> bool:
        """Insert a click; ``False`` (and nothing written) when its sub_id already exists."""
        try:
            self._insert("clicks", CLICK_COLUMNS, row)
        except sqlite3.IntegrityError:
            return False
        return True

    def add_offer_click(self, row: Mapping[str, Any]) -> None:
        """Insert an offer click."""
        self._insert("offer_clicks", OFFER_CLICK_COLUMNS, row)

    def add_conversion(self, row: Mapping[str, Any]) -> int:
        """Insert a conversion; its id."""
        return self._insert("conversions", CONVERSION_COLUMNS, row)

    def update_conversion(self, conversion_id: int, fields: Mapping[str, Any]) -> None:
        """Set ``fields`` (columns of ``conversions``) on one conversion."""
        names = [name for name in fields if name in CONVERSION_COLUMNS]
        sql = f"UPDATE conversions SET {', '.join(f'{n} = ?' for n in names)} WHERE id = ?"
        with self._lock:
            self._db.execute(sql, [*(_to_db(fields[n]) for n in names), conversion_id])

    def add_postback(self, row: Mapping[str, Any]) -> None:
        """Insert a received postback."""
        self._insert("postbacks", POSTBACK_COLUMNS, row)

    def update_click_params(self, sub_id: str, params: Mapping[str, str]) -> None:
        """Merge ``params`` into the ``params`` of the click ``sub_id``."""
        with self._lock:
            row = self._db.execute("SELECT params FROM clicks WHERE sub_id = ?", (sub_id,))
            found = row.fetchone()
            if found is not None:
                merged = {**json.loads(found[0]), **params}
                self._db.execute(
                    "UPDATE clicks SET params = ? WHERE sub_id = ?", (_to_db(merged), sub_id)
                )

    def _insert(self, table: str, columns: tuple[str, ...], row: Mapping[str, Any]) -> int:
        values = [_to_db(row.get(column)) for column in columns]
        sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        with self._lock:
            return int(self._db.execute(sql, values).lastrowid or 0)

    def count_stream_clicks(self, stream_id: int, since: float | None = None) -> int:
        """How many clicks went to ``stream_id`` (at or after ``since`` when given)."""
        sql = "SELECT COUNT(*) FROM clicks WHERE stream_id = ?"
        args: list[object] = [stream_id]
        if since is not None:
            sql += " AND time >= ?"
            args.append(since)
        with self._lock:
            return int(self._db.execute(sql, args).fetchone()[0])

    def click(self, sub_id: str) -> dict[str, Any] | None:
        """The click with ``sub_id``, or ``None``."""
        rows = self._select("clicks", "WHERE sub_id = ?", (sub_id,))
        return rows[0] if rows else None

    def clicks(self, latest: int | None = None) -> list[dict[str, Any]]:
        """All clicks, oldest first; or the ``latest`` ones, newest first."""
        return self._rows("clicks", latest)

    def offer_clicks(self, latest: int | None = None) -> list[dict[str, Any]]:
        """All offer clicks, oldest first; or the ``latest`` ones, newest first."""
        return self._rows("offer_clicks", latest)

    def conversions(self, latest: int | None = None) -> list[dict[str, Any]]:
        """All conversions, oldest first; or the ``latest`` ones, newest first."""
        return self._rows("conversions", latest)

    def conversions_of(self, sub_id: str) -> list[dict[str, Any]]:
        """The conversions of the click ``sub_id``, oldest first."""
        return self._select("conversions", "WHERE sub_id = ? ORDER BY id", (sub_id,))

    def postbacks(self, latest: int | None = None) -> list[dict[str, Any]]:
        """All received postbacks, oldest first; or the ``latest`` ones, newest first."""
        return self._rows("postbacks", latest)

    def _rows(self, table: str, latest: int | None) -> list[dict[str, Any]]:
        if latest is None:
            return self._select(table, "ORDER BY id", ())
        return self._select(table, "ORDER BY id DESC LIMIT ?", (latest,))

    def _select(self, table: str, tail: str, args: tuple[object, ...]) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(f"SELECT * FROM {table} {tail}", args).fetchall()
        return [_from_db(row) for row in rows]

    def reset(self) -> None:
        """Delete every click, offer click, conversion and received postback."""
        with self._lock:
            self._db.executescript(
                "DELETE FROM clicks; DELETE FROM offer_clicks; DELETE FROM conversions;"
                " DELETE FROM postbacks;"
            )


def _to_db(value: object) -> object:
    if isinstance(value, dict | list):
        # allow_nan=False: the log only ever holds valid JSON.
        return json.dumps(value, separators=(",", ":"), allow_nan=False)
    if isinstance(value, bool):
        return int(value)
    return value


def _from_db(row: sqlite3.Row) -> dict[str, Any]:
    item = dict(row)
    for column in _BOOL_COLUMNS:
        if column in item:
            item[column] = bool(item[column])
    for column in _JSON_COLUMNS:
        if column in item:
            item[column] = json.loads(item[column])
    return item
