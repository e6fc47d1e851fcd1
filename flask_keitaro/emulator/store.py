"""The click log: clicks, offer clicks and conversions in SQLite (stdlib ``sqlite3``).

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
OFFER_CLICK_COLUMNS = ("time", "sub_id", "campaign_id", "stream_id", "offer_id", "url")
CONVERSION_COLUMNS = (
    "time",
    "sub_id",
    "campaign_id",
    "stream_id",
    "offer_id",
    "status",
    "payout",
    "params",
)
_BOOL_COLUMNS = ("is_bot", "unique_campaign", "unique_stream", "unique_global")

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
    stream_id INTEGER, offer_id INTEGER NOT NULL, url TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS conversions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL, sub_id TEXT NOT NULL, campaign_id INTEGER NOT NULL,
    stream_id INTEGER, offer_id INTEGER, status TEXT NOT NULL, payout REAL NOT NULL,
    params TEXT NOT NULL
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
        self._db.executescript(_SCHEMA)

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

    def add_conversion(self, row: Mapping[str, Any]) -> None:
        """Insert a conversion."""
        self._insert("conversions", CONVERSION_COLUMNS, row)

    def _insert(self, table: str, columns: tuple[str, ...], row: Mapping[str, Any]) -> None:
        values = [_to_db(row.get(column)) for column in columns]
        sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        with self._lock:
            self._db.execute(sql, values)

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

    def _rows(self, table: str, latest: int | None) -> list[dict[str, Any]]:
        if latest is None:
            return self._select(table, "ORDER BY id", ())
        return self._select(table, "ORDER BY id DESC LIMIT ?", (latest,))

    def _select(self, table: str, tail: str, args: tuple[object, ...]) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(f"SELECT * FROM {table} {tail}", args).fetchall()
        return [_from_db(row) for row in rows]

    def reset(self) -> None:
        """Delete every click, offer click and conversion."""
        with self._lock:
            self._db.executescript(
                "DELETE FROM clicks; DELETE FROM offer_clicks; DELETE FROM conversions;"
            )


def _to_db(value: object) -> object:
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"))
    if isinstance(value, bool):
        return int(value)
    return value


def _from_db(row: sqlite3.Row) -> dict[str, Any]:
    item = dict(row)
    for column in _BOOL_COLUMNS:
        if column in item:
            item[column] = bool(item[column])
    if "params" in item:
        item["params"] = json.loads(item["params"])
    return item
