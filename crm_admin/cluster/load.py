"""A light mixed load and an acknowledged-write log, through the HTTP load balancer.

``Load`` runs N simulated users (nine managers to one administrator, 3–7 s think time, the pages of
the benchmark's Locust mix) in one asyncio loop: cheap enough to share two cores with the cluster.
``Writer`` saves follow-ups, transfers customers and records care feedback as fast as the app answers,
each with a unique marker, and appends every write the app acknowledged (303/302 to the success
page) to a JSON-lines file — the list a drill later looks up in the database.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import random
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from crm_admin.perf.client import find_token
from crm_admin.perf.generate import BENCH_PASSWORD, admin_username, manager_username

PREFIXES = [quote(p) for p in ("上海恒", "北京华", "深圳瑞", "杭州新", "广州德", "成都天")]
COMBINED = "industry=manufacturing&level=A&status=active&created_from=2023-01-01"


@dataclass
class Sample:
    start: float  # seconds since the load began
    seconds: float
    name: str
    ok: bool
    error: str = ""


@dataclass
class Recorder:
    t0: float = field(default_factory=time.monotonic)
    samples: list[Sample] = field(default_factory=list)

    def now(self) -> float:
        return time.monotonic() - self.t0

    async def call(self, name: str, send: Awaitable[httpx.Response],
                   ok: Callable[[httpx.Response], bool]) -> httpx.Response | None:
        start = self.now()
        try:
            reply = await send
        except httpx.HTTPError as exc:
            self.samples.append(Sample(start, self.now() - start, name, False, type(exc).__name__))
            return None
        good = ok(reply)
        error = "" if good else f"HTTP {reply.status_code}"
        self.samples.append(Sample(start, self.now() - start, name, good, error))
        return reply


def _ok200(reply: httpx.Response) -> bool:
    return reply.status_code == 200


def _page_ok(reply: httpx.Response) -> bool:
    """A page opened: 200, or a redirect that is not to the sign-in page (a list page past the end)."""
    return reply.status_code < 400 and "/login" not in reply.headers.get("location", "")


def _acknowledged(reply: httpx.Response) -> bool:
    location = reply.headers.get("location", "")
    return reply.status_code in (302, 303) and "error=" not in location and "/login" not in location


def client(base_url: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base_url, timeout=httpx.Timeout(15.0), follow_redirects=False,
                             limits=httpx.Limits(max_connections=2, max_keepalive_connections=2))


async def login(rec: Recorder, http: httpx.AsyncClient, username: str) -> str | None:
    """Sign in (retrying while the cluster is unavailable); the session's CSRF token."""
    for _ in range(30):
        page = await rec.call("login", http.get("/admin/login"), _ok200)
        if page is not None and page.status_code == 200:
            data = {"username": username, "password": BENCH_PASSWORD, "csrf_token": find_token(page.text)}
            reply = await rec.call("login(POST)", http.post("/admin/login", data=data), _acknowledged)
            if reply is not None and _acknowledged(reply):
                token_page = await rec.call("account_password", http.get("/admin/account/password"), _ok200)
                if token_page is not None and token_page.status_code == 200:
                    return find_token(token_page.text)
        await asyncio.sleep(1)
    return None


class User:
    def __init__(self, rec: Recorder, base_url: str, username: str, admin: bool, stop: asyncio.Event) -> None:
        self.rec, self.base_url, self.username, self.admin, self.stop = rec, base_url, username, admin, stop
        self.customer_ids: list[int] = []
        self.token = ""

    def cid(self) -> int:
        return random.choice(self.customer_ids) if self.customer_ids else 1

    def tasks(self) -> list[tuple[str, int, Callable[[], str]]]:
        if self.admin:
            return [
                ("customer_list_admin", 3, lambda: "/admin/customer/list"),
                ("customer_list_deep", 1, lambda: f"/admin/customer/list?page={random.randint(2, 40)}"),
                ("customer_combined_admin", 2, lambda: f"/admin/customer/list?{COMBINED}"),
                ("audit_log", 2, lambda: "/admin/audit-log/list"),
                ("dashboard_admin", 2, lambda: "/admin/"),
                ("customer_360", 2, lambda: f"/admin/customer/360/{self.cid()}"),
            ]
        return [
            ("customer_list_manager", 6, lambda: "/admin/customer/list"),
            ("customer_list_page_n", 2, lambda: f"/admin/customer/list?page={random.randint(2, 5)}"),
            ("customer_combined", 2, lambda: f"/admin/customer/list?{COMBINED}"),
            ("customer_prefix_search", 2, lambda: f"/admin/customer/list?search={random.choice(PREFIXES)}"),
            ("customer_360", 5, lambda: f"/admin/customer/360/{self.cid()}"),
            ("dashboard_manager", 3, lambda: "/admin/"),
            ("care_workbench", 2, lambda: "/admin/care/workbench"),
            ("follow_ups_due", 2, lambda: "/admin/follow-ups/due"),
            ("pipeline", 1, lambda: "/admin/pipeline"),
            ("follow_up_save", 1, lambda: ""),
        ]

    async def run(self, think: tuple[float, float]) -> None:
        async with client(self.base_url) as http:
            token = await login(self.rec, http, self.username)
            if token is None:
                return
            self.token = token
            listing = await self.rec.call("customer_list_first", http.get("/admin/customer/list?pageSize=100"), _ok200)
            if listing is not None:
                self.customer_ids = [int(c) for c in dict.fromkeys(re.findall(r"/admin/customer/360/(\d+)", listing.text))]
            tasks = self.tasks()
            weights = [w for _, w, _ in tasks]
            while not self.stop.is_set():
                try:
                    await asyncio.wait_for(self.stop.wait(), random.uniform(*think))
                    return
                except TimeoutError:
                    pass
                name, _, path = random.choices(tasks, weights)[0]
                if name == "follow_up_save":
                    body = {"method": "phone", "content": "负载:电话沟通采购计划。", "csrf_token": self.token,
                            "contacted_at": dt.datetime.now().strftime("%Y-%m-%d %H:%M")}
                    await self.rec.call(name, http.post(
                        f"/admin/customer/360/{self.cid()}/follow-up", data=body,
                        headers={"X-CSRF-Token": self.token}), _acknowledged)
                else:
                    await self.rec.call(name, http.get(path()), _page_ok)


async def run_users(rec: Recorder, base_url: str, users: int, stop: asyncio.Event, *, managers: int,
                    think: tuple[float, float] = (3.0, 7.0), ramp_s: float = 20.0) -> None:
    """``users`` simulated users (one in ten an administrator), started over ``ramp_s`` seconds."""
    running = []
    for i in range(users):
        admin = i % 10 == 9
        name = admin_username(1) if admin else manager_username(i % managers + 1)
        running.append(asyncio.create_task(User(rec, base_url, name, admin, stop).run(think)))
        await asyncio.sleep(ramp_s / max(users, 1))
    await asyncio.gather(*running)


class Writer:
    """Acknowledged writes, each logged with its marker the moment the app confirmed it."""

    def __init__(self, rec: Recorder, base_url: str, run_id: str, log: Path, *, username: str,
                 admin_user: str, customers: list[int], transfer: dict[str, Any], care_type: str) -> None:
        self.rec, self.base_url, self.run_id, self.log = rec, base_url, run_id, log
        self.username, self.admin_user, self.customers = username, admin_user, customers
        self.transfer, self.care_type = transfer, care_type
        self.seq = 0
        self.owner = 1  # which of transfer["managers"] has the customer now (index; set up with the second)
        self.acked = 0
        self.sent = 0

    def _ack(self, kind: str, marker: str, start: float, extra: dict[str, Any] | None = None) -> None:
        self.acked += 1
        with open(self.log, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"kind": kind, "marker": marker, "sent": round(start, 3),
                                 "acked": round(self.rec.now(), 3), **(extra or {})}, ensure_ascii=False) + "\n")

    async def run(self, stop: asyncio.Event, pause: float = 0.1) -> None:
        async with client(self.base_url) as http, client(self.base_url) as admin_http:
            token = await login(self.rec, http, self.username)
            admin_token = await login(self.rec, admin_http, self.admin_user)
            if token is None or admin_token is None:
                raise RuntimeError("the writer could not sign in")
            while not stop.is_set():
                self.seq += 1
                kind = ("follow_up", "follow_up", "care_feedback", "transfer")[self.seq % 4]
                marker = f"drill-{self.run_id}-{self.seq:06d}"
                cid = self.customers[self.seq % len(self.customers)]
                start = self.rec.now()
                self.sent += 1
                if kind == "follow_up":
                    body = {"method": "phone", "content": marker, "csrf_token": token,
                            "contacted_at": dt.datetime.now().strftime("%Y-%m-%d %H:%M")}
                    reply = await self.rec.call("write:follow_up", http.post(
                        f"/admin/customer/360/{cid}/follow-up", data=body, headers={"X-CSRF-Token": token}), _acknowledged)
                elif kind == "care_feedback":
                    body = {"customer_id": str(cid), "care_type": self.care_type, "detail": "演练:电话回访",
                            "feedback": marker, "care_time": dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
                            "csrf_token": token}
                    reply = await self.rec.call("write:care_feedback", http.post(
                        "/admin/care/manual", data=body, headers={"X-CSRF-Token": token}), _acknowledged)
                else:
                    reply = await self._transfer(admin_http, admin_token, marker)
                    if reply is not None and (_acknowledged(reply) or reply.status_code == 400):
                        # moved (or, on a refusal, already moved by a write whose answer was lost)
                        self.owner = 1 - self.owner
                if reply is not None and _acknowledged(reply):
                    self._ack(kind, marker, start)
                await asyncio.sleep(pause)

    async def _transfer(self, http: httpx.AsyncClient, token: str, marker: str) -> httpx.Response | None:
        """Move the drill's customer to the other manager (the version read from the form page)."""
        t = self.transfer
        cid = t["customer_id"]
        target = t["managers"][1 - self.owner]
        page = await self.rec.call("transfer_form", http.get(f"/admin/transfer?customer_id={cid}"), _ok200)
        match = re.search(rf'name="version_{cid}" value="(\d+)"', page.text if page is not None else "")
        if match is None:
            return None
        body = {"customer_id": str(cid), f"version_{cid}": match.group(1), "new_manager_id": str(target),
                "reason": marker, "csrf_token": token}
        return await self.rec.call("write:transfer", http.post(
            "/admin/transfer/submit", data=body, headers={"X-CSRF-Token": token}), _acknowledged)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summarize(samples: list[Sample], start: float, end: float) -> dict[str, Any]:
    window = [s for s in samples if start <= s.start < end]
    good = [s.seconds for s in window if s.ok]
    errors: dict[str, int] = {}
    for s in window:
        if not s.ok:
            errors[f"{s.name}: {s.error}"] = errors.get(f"{s.name}: {s.error}", 0) + 1
    return {
        "seconds": round(end - start, 1), "requests": len(window), "errors": sum(errors.values()),
        "throughput_rps": round(len(window) / max(end - start, 1e-9), 2),
        "p50_ms": round(percentile(good, 0.50) * 1000), "p95_ms": round(percentile(good, 0.95) * 1000),
        "error_kinds": dict(sorted(errors.items(), key=lambda kv: -kv[1])),
    }
