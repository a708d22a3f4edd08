"""Mixed load for ``crm-admin bench --load``: logged-in managers and admins with 3–7 s think time.

Each simulated user signs in with its own generated account (mgr001…, admin01…; password
``BENCH_PASSWORD``), carries the session's CSRF token on every POST, and works on its own customers
(read from the database named by ``CRM_BENCH_DATABASE_URL``). Pages that are not built yet (404 on
every candidate address) are left out of the mix. Nine managers to one administrator.

Run by hand:  CRM_BENCH_DATABASE_URL=mysql+pymysql://… locust -f bench/locustfile.py --headless \
              -u 200 -r 10 -t 5m --host http://127.0.0.1:8000
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import random
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from locust import FastHttpUser, between, task
from sqlalchemy import create_engine, select
from sqlalchemy.pool import NullPool

from crm_admin.perf.bench import PAGES
from crm_admin.perf.client import find_token
from crm_admin.perf.generate import BENCH_PASSWORD, admin_username, manager_username

_managers = itertools.count(1)
_admins = itertools.count(1)
_engine: Any = None
_available: dict[str, str | None] = {}  # page key → working path template, None when not built
_CANDIDATES = {p.key: p.paths for p in PAGES}
_COMBINED = "industry=manufacturing&level=A&status=active&created_from=2023-01-01"
_PREFIXES = [quote(p) for p in ("上海恒", "北京华", "深圳瑞", "杭州新", "广州德", "成都天")]


def _db() -> Any:
    global _engine
    if _engine is None:
        _engine = create_engine(os.environ["CRM_BENCH_DATABASE_URL"], poolclass=NullPool)
    return _engine


_user_id_cache: dict[str, int] = {}


def _ids_of(username: str) -> int:
    """The user's id (all generated users read in one query per Locust process)."""
    if not _user_id_cache:
        import crm_admin.models  # noqa: F401
        from crm_admin.accounts.models import SysUser

        with _db().connect() as conn:
            _user_id_cache.update({str(u): int(i) for u, i in conn.execute(select(SysUser.username, SysUser.id))})
    return _user_id_cache[username]


class CrmUser(FastHttpUser):
    """FastHttpUser: the load generator shares the server's two cores, so it should use as little CPU
    as it can (several times less than the requests-based HttpUser)."""

    abstract = True
    wait_time = between(3, 7)
    username = ""

    def on_start(self) -> None:
        self.username = self.pick_username()
        self.user_id, self.customer_ids = _ids_of(self.username), []
        page = self.client.get("/admin/login", name="login")
        reply = self.client.post("/admin/login", name="login", allow_redirects=False,
                                 data={"username": self.username, "password": BENCH_PASSWORD,
                                       "csrf_token": find_token(page.text)})
        if reply.status_code != 302:
            raise RuntimeError(f"login failed for {self.username}: {reply.status_code}")
        self.token = find_token(self.client.get("/admin/account/password", name="account_password").text)
        # the customers this user works on: the ones their list shows (as a person would click them)
        listing = self.client.get("/admin/customer/list?pageSize=100", name="customer_list_first")
        self.customer_ids = [int(c) for c in dict.fromkeys(re.findall(r"/admin/customer/360/(\d+)", listing.text))]

    def pick_username(self) -> str:
        raise NotImplementedError

    # ----- helpers ------------------------------------------------------------------------
    def cid(self) -> int:
        return random.choice(self.customer_ids) if self.customer_ids else 0

    def page(self, key: str, **values: Any) -> None:
        """GET the page ``key`` (first candidate address that exists), grouped under its key."""
        if key not in _available:
            _available[key] = None
            for candidate in _CANDIDATES[key]:
                path = candidate.format(**self._values(values))
                with self.client.get(path, name=f"probe:{key}", catch_response=True) as r:
                    found = r.status_code != 404
                    r.success()  # a missing candidate address is not an error of the system
                if found:
                    _available[key] = candidate
                    break
        template = _available[key]
        if template is None:
            return
        with self.client.get(template.format(**self._values(values)), name=key, catch_response=True) as r:
            if r.status_code != 200:
                r.failure(f"HTTP {r.status_code}")

    def _values(self, extra: dict[str, Any]) -> dict[str, Any]:
        today = dt.date.today()
        return {"cid": self.cid(), "uid": self.user_id, "deep": 2, "prefix": random.choice(_PREFIXES),
                "date_from": (today - dt.timedelta(days=30)).isoformat(), "date_to": today.isoformat(),
                **extra}


def _opens(key: str, weight: int) -> Any:
    """A task that opens the page ``key`` (``weight``: how often, against the user's other tasks)."""

    def open_page(user: CrmUser) -> None:
        user.page(key)

    open_page.__name__ = open_page.__qualname__ = key
    return task(weight)(open_page)


def _lists(query: Callable[[], str], name: str, weight: int) -> Any:
    """A task that opens the customer list with ``query`` (made anew each time), counted under ``name``."""

    def open_list(user: CrmUser) -> None:
        user.client.get(f"/admin/customer/list?{query()}", name=name)

    open_list.__name__ = open_list.__qualname__ = name
    return task(weight)(open_list)


class Manager(CrmUser):
    weight = 9

    def pick_username(self) -> str:
        return manager_username((next(_managers) - 1) % 180 + 1)

    customer_list = _opens("customer_list_manager", weight=6)

    customer_list_next_pages = _lists(lambda: f"page={random.randint(2, 10)}", "customer_list_page_n", weight=2)
    combined_query = _lists(lambda: _COMBINED, "customer_combined", weight=2)
    prefix_search = _lists(lambda: f"search={random.choice(_PREFIXES)}", "customer_prefix_search", weight=2)

    customer_360 = _opens("customer_360", weight=5)
    dashboard = _opens("dashboard_manager", weight=3)
    care_workbench = _opens("care_workbench", weight=2)
    follow_ups_due = _opens("follow_ups_due", weight=2)
    pipeline = _opens("pipeline", weight=1)

    @task(1)
    def save_follow_up(self) -> None:
        if not self.customer_ids:
            return
        body = {"method": "phone", "content": "负载测试:电话沟通采购计划。",
                "contacted_at": dt.datetime.now().strftime("%Y-%m-%d %H:%M"), "csrf_token": self.token}
        with self.client.post(f"/admin/customer/360/{self.cid()}/follow-up", data=body, name="follow_up_save",
                              headers={"X-CSRF-Token": self.token}, allow_redirects=False,
                              catch_response=True) as r:
            if r.status_code not in (302, 303) or "error=" in r.headers.get("location", ""):
                r.failure(f"HTTP {r.status_code} {r.headers.get('location', '')[:120]}")


class Admin(CrmUser):
    weight = 1

    def pick_username(self) -> str:
        return admin_username((next(_admins) - 1) % 5 + 1)

    customer_list = _opens("customer_list_admin", weight=3)

    deep_page = _lists(lambda: f"page={random.randint(100, 5000)}", "customer_list_deep", weight=1)
    combined_query = _lists(lambda: _COMBINED, "customer_combined_admin", weight=2)

    @task(2)
    def audit_log(self) -> None:
        self.page("audit_by_user_range", uid=random.randint(1, 200))

    dashboard = _opens("dashboard_admin", weight=2)
    customer_360 = _opens("customer_360", weight=2)
