"""The administrator's company-wide numbers are reused only while their tables are unchanged."""

from __future__ import annotations

import datetime as dt
import re
import time
from typing import Any

import pytest

from crm_admin import db
from crm_admin.dashboard import service
from crm_admin.dashboard.cache import Marks, TableCache
from tests.care import factories as f


def _marks(changed: dt.datetime | None, now: dt.datetime) -> Marks:
    return Marks(now=now, changed={"linkman": changed})


def test_table_cache_reuses_only_while_the_table_is_unchanged_and_settled() -> None:
    cache = TableCache()
    calls: list[int] = []

    def compute() -> dict[str, int]:
        calls.append(1)
        return {"n": len(calls)}

    now = dt.datetime(2026, 11, 25, 12, 0, 10)
    quiet = _marks(dt.datetime(2026, 11, 25, 12, 0, 0), now)
    assert cache.get("k", ("linkman",), quiet, compute) == {"n": 1}
    assert cache.get("k", ("linkman",), quiet, compute) == {"n": 1}  # unchanged table: reused
    changed = _marks(dt.datetime(2026, 11, 25, 12, 0, 5), now)
    assert cache.get("k", ("linkman",), changed, compute) == {"n": 2}  # changed since: counted again
    busy = _marks(dt.datetime(2026, 11, 25, 12, 0, 9), now)  # changed a second ago: may still be changing
    assert cache.get("k2", ("linkman",), busy, compute) == {"n": 3}
    assert cache.get("k2", ("linkman",), busy, compute) == {"n": 4}  # so never kept
    assert cache.get("k3", ("linkman",), None, compute) == {"n": 5}  # no change times (SQLite): always counted
    assert cache.get("k3", ("linkman",), None, compute) == {"n": 6}
    # a server that answers but keeps no change times (TiDB; MariaDB before a table's first write
    # since it started): unknown is not "unchanged", always counted
    unknown = _marks(None, now)
    assert cache.get("k4", ("linkman",), unknown, compute) == {"n": 7}
    assert cache.get("k4", ("linkman",), unknown, compute) == {"n": 8}
    kept = cache.get("k", ("linkman",), changed, compute)
    assert kept == {"n": 2}
    kept["n"] = 99  # a caller changing what it got does not change what is kept
    assert cache.get("k", ("linkman",), changed, compute) == {"n": 2}


def _stat(html: str, stat_id: str) -> str:
    m = re.search(rf'id="{stat_id}".*?<div class="h1[^"]*">([^<]*)</div>', html, re.S)
    assert m, stat_id
    return m.group(1).strip()


def test_admin_overview_follows_every_change(admin_client: Any, make_user: Any, monkeypatch: Any) -> None:
    service._CACHE.clear()
    a = make_user("cache_a")
    cust = f.customer(a.id, "缓存测试客户")
    f.linkman(cust.id, name="第一位联系人")
    counted: list[str] = []
    original = service._linkman_total

    def counting(session: Any, ask: Any, board: Any) -> None:
        counted.append("linkman")
        original(session, ask, board)

    monkeypatch.setattr(service, "_linkman_total", counting)
    monkeypatch.setitem(service._TABLES, counting, ("linkman",))
    if db.get_engine().dialect.name in ("mysql", "mariadb"):
        time.sleep(2.2)  # let the table settle, so the count may be kept
    first = admin_client.get("/admin/")
    before = int(_stat(first.text, "stat-linkmen"))
    second = admin_client.get("/admin/")
    assert int(_stat(second.text, "stat-linkmen")) == before
    if db.get_engine().dialect.name in ("mysql", "mariadb"):
        assert counted == ["linkman"]  # the second view reused the count
    else:
        assert counted == ["linkman", "linkman"]  # nothing to tell a change by: counted every time
    f.linkman(cust.id, name="第二位联系人")
    assert int(_stat(admin_client.get("/admin/").text, "stat-linkmen")) == before + 1


@pytest.fixture(autouse=True)
def _fresh_cache() -> Any:
    service._CACHE.clear()
    yield
    service._CACHE.clear()
