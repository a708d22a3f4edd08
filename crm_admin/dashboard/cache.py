"""Company-wide dashboard numbers kept while the tables they are counted from have not changed.

The administrator's overview counts whole tables (600,000 contacts, every open opportunity, every due
follow-up): ~200 ms of database time per view, the same for every administrator. MariaDB/MySQL keep,
per InnoDB table, the time of the last committed change (``information_schema.TABLES.UPDATE_TIME``,
one-second resolution). A number is served again only while each table it reads shows the same
last-change time as when it was counted, and only if that time was at least two seconds before the
count started (so a change committed in the same second cannot be missed). Anything else counts
again; so does every entry after ``MAX_AGE_S`` (a transaction whose last write fell in the same second
as the previous change but that committed seconds later leaves the time unchanged: at worst a number
is that old), every database other than
MariaDB/MySQL (SQLite has no such time), and every number none of whose tables shows a time (TiDB
answers the query but leaves ``UPDATE_TIME`` empty). Only numbers of the unscoped (everyone's) view are kept:
they are the same for every administrator.

On a MariaDB Galera cluster the time moves on every node, not only on the one that took the write:
each node's applier commits the replicated rows through InnoDB, which stamps the table (checked on
the three-node cluster of ``scripts/cluster.sh``: a write through node 1 showed the same new time on
nodes 2 and 3 within the second; ``tests/cluster`` checks it again). After a fail-over the app reads
another node's times, which differ from the ones it kept (or are NULL after that node restarted):
the numbers are counted again, never served stale.
"""

from __future__ import annotations

import copy
import datetime as dt
import threading
import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.orm import Session

MAX_AGE_S = 60.0
SETTLE_S = 2  # a table changed this recently may still be changing: do not keep what was counted from it


@dataclass(frozen=True)
class Marks:
    """The database's clock and the last-change time of some tables, read in one query."""

    now: dt.datetime
    changed: dict[str, dt.datetime | None]

    def of(self, tables: Iterable[str]) -> tuple[Any, ...]:
        return tuple(self.changed.get(t) for t in tables)

    def settled(self, tables: Iterable[str]) -> bool:
        limit = self.now - dt.timedelta(seconds=SETTLE_S)
        return all((self.changed.get(t) or dt.datetime.min) <= limit for t in tables)


def read_marks(session: Session, tables: Iterable[str]) -> Marks | None:
    """The tables' last-change times, or None where the database does not keep them."""
    if session.get_bind().dialect.name not in ("mysql", "mariadb"):
        return None
    names = sorted(set(tables))
    rows = session.execute(text(
        "SELECT NOW(), TABLE_NAME, UPDATE_TIME FROM information_schema.TABLES "
        "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME IN :names"
    ).bindparams(bindparam("names", expanding=True)), {"names": names}).all()
    if not rows:
        return None
    return Marks(now=rows[0][0], changed={str(name): changed for _now, name, changed in rows})


@dataclass
class _Entry:
    marks: tuple[Any, ...]
    stored: float
    value: Any


class TableCache:
    """Values computed from some tables, reused while those tables are unchanged."""

    def __init__(self) -> None:
        self._entries: dict[Hashable, _Entry] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable, tables: tuple[str, ...], marks: Marks | None, compute: Callable[[], Any]) -> Any:
        if marks is None:
            return compute()
        current = marks.of(tables)
        if all(changed is None for changed in current):
            # no change time for any of them: TiDB keeps none; MariaDB has none for a table not
            # written since the server started. Unknown is not "unchanged": count every time.
            return compute()
        with self._lock:
            entry = self._entries.get(key)
        if entry is not None and entry.marks == current and time.monotonic() - entry.stored < MAX_AGE_S:
            return copy.deepcopy(entry.value)
        value = compute()
        if marks.settled(tables):
            with self._lock:
                self._entries[key] = _Entry(current, time.monotonic(), copy.deepcopy(value))
        return value

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
