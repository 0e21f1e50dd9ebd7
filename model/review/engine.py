"""The store's database connections: one SQLAlchemy engine per store, set up per backend.

The only dialect-specific lines of the store live here:
- SQLite: WAL journal (readers never block the writer), a busy timeout (a writer waits for another's
  lock instead of failing at once), foreign keys on, ``synchronous=FULL`` (a committed review survives
  a crash of the machine too), and ``BEGIN IMMEDIATE`` for write transactions (pysqlite's recipe:
  the driver's own transaction handling is turned off), so a writer takes the lock up front and never
  fails on a stale read snapshot when another process committed in between;
- PostgreSQL: the psycopg 3 driver, a connect timeout and a ``lock_timeout``, so a locked table is
  reported after ``timeout_s`` instead of hanging the page.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL

#: Execution option that marks a write transaction (SQLite: BEGIN IMMEDIATE).
WRITE_OPTION = "store_write"


def make_engine(url: URL, timeout_s: float) -> Engine:
    """An engine with the store's connection settings for ``url``'s backend."""
    backend = url.get_backend_name()
    ms = int(timeout_s * 1000)
    if backend == "postgresql":
        if url.drivername == "postgresql":
            url = url.set(drivername="postgresql+psycopg")  # psycopg 3 (a dependency), not psycopg2
        options = " ".join(filter(None, [url.query.get("options"), f"-c lock_timeout={ms}"]))
        url = url.difference_update_query(["options"])
        return create_engine(
            url,
            connect_args={"connect_timeout": max(1, int(timeout_s)), "options": options},
            pool_pre_ping=True,
        )
    if backend != "sqlite":
        return create_engine(url)
    engine = create_engine(url, connect_args={"timeout": timeout_s})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # transactions are begun below, not by the driver
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout={ms}")
        mode = cur.execute("PRAGMA journal_mode").fetchone()[0]
        if str(mode).lower() != "wal":
            cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=FULL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(WRITE_OPTION) else "BEGIN")

    return engine
