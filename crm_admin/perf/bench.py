"""The benchmark: pages measured one request at a time against a server started as production starts it.

``run_bench`` starts ``crm-admin serve`` (one worker per core) on the given database, logs in as an
administrator, a manager with a large book (5,000 customers at standard scale) and a typical manager,
and times every page of the list in ``PAGES`` (warm-up request, then ``repeat`` timed requests):
p50/p95/max and the server's CPU time per request (read from /proc for the whole process tree).
Pages that are not built yet answer 404 and are reported as skipped. Writes the results as JSON and a
short Markdown table.

``smoke=True`` runs the same code on a tiny generated data set with 3 requests per page, so that CI
keeps the benchmark working; only the full run says anything about speed.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
from sqlalchemy import Engine, create_engine, func, select
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from crm_admin.perf.client import login, process_tree, server_rss_mb
from crm_admin.perf.generate import admin_username, lead_username, manager_username, viewer_username
from crm_admin.perf.import_bench import run_import_bench

RESULTS_DIR = Path("bench/results")


# ----- measuring ----------------------------------------------------------------------------

def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p95 of 20 samples is the 19th smallest)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def database_pid() -> int | None:
    """The local MariaDB/MySQL server's process, when it runs on this machine."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm", encoding="ascii", errors="replace") as fh:
                    if fh.read().strip() in ("mariadbd", "mysqld"):
                        return int(entry)
            except OSError:
                continue
    return None


def server_cpu_seconds(root: int) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in process_tree(root):
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime + stime
        except OSError:
            continue
    return total / ticks


# ----- the server -----------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bench_env(database_url: str, data_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "CRM_DATABASE_URL": database_url,
        "CRM_DATA_DIR": str(data_dir),
        "CRM_SECRET_KEY": env.get("CRM_SECRET_KEY") or "bench-secret-key-" + "b" * 32,
        # the scheduler's jobs are timed on their own (jobs section), not inside page timings
        "CRM_SCHEDULER_ENABLED": "false",
        # every simulated user comes from 127.0.0.1: the per-IP login throttle would refuse them
        "CRM_LOGIN_IP_MAX_PER_MINUTE": "10000",
        "CRM_LOG_LEVEL": "WARNING",
        # each answer says its time in the database (Server-Timing): the page's SQL share is reported
        "CRM_SERVER_TIMING": "true",
    })
    env.pop("CRM_ENV", None)
    return env


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_server(database_url: str, *, workers: int, data_dir: Path, port: int | None = None) -> Server:
    """``crm-admin serve`` exactly as an installation runs it, in a subprocess."""
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / "bench-server.log"
    log = open(log_path, "wb")  # noqa: SIM115  (the child keeps writing to it)
    process = subprocess.Popen(
        [sys.executable, "-m", "crm_admin.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
         "--workers", str(workers)],
        env=bench_env(database_url, data_dir), stdout=log, stderr=subprocess.STDOUT,
    )
    server = Server(process, f"http://127.0.0.1:{port}", log_path)
    deadline = time.monotonic() + 300  # a busy machine: migrations check + seeding + workers
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {log_path.read_text(errors='replace')[-2000:]}")
        try:
            if httpx.get(f"{server.base_url}/readyz", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    server.stop()
    raise RuntimeError("server did not become ready in 300 s")


# ----- sessions -------------------------------------------------------------------------------

# ----- what is measured -----------------------------------------------------------------------

@dataclass
class Ctx:
    """Ids the page paths and forms refer to, read from the generated database."""

    users: dict[str, int]
    customers_of: dict[str, int]  # role → one customer of that user
    visible: dict[str, int]  # role → customers visible to that user
    transfer_targets: list[tuple[int, int]]  # (customer id, version) of the typical manager
    transfer_to: int
    today: dt.date

    def fmt(self, text: str, role: str) -> str:
        visible = self.visible.get(role, 0)
        return text.format(
            cid=self.customers_of.get(role, 0), uid=self.users.get(role, 0),
            deep=max(1, visible // 20 // 2),
            date_from=(self.today - dt.timedelta(days=30)).isoformat(), date_to=self.today.isoformat(),
            month_ago=(self.today - dt.timedelta(days=30)).isoformat(),
            prefix=quote("上海恒"),
        )


@dataclass(frozen=True)
class Page:
    key: str
    title: str
    role: str  # admin / manager_big / manager / lead (a sales lead: the whole department)
    paths: tuple[str, ...]  # candidates: the first that answers is measured
    target_ms: int = 150
    method: str = "GET"
    form: Callable[[Ctx, int], dict[str, str]] | None = None  # POST body for the i-th request
    api: bool = False  # a REST API call (/api/v1) with the role's personal token instead of the session


def _transfer_form(ctx: Ctx, i: int) -> dict[str, str]:
    cid, version = ctx.transfer_targets[i % len(ctx.transfer_targets)]
    return {"customer_id": str(cid), f"version_{cid}": str(version), "new_manager_id": str(ctx.transfer_to),
            "reason": "性能测试:客户经理岗位调整"}


def _follow_up_form(ctx: Ctx, i: int) -> dict[str, str]:
    now = dt.datetime.now() - dt.timedelta(minutes=i)
    return {"method": "phone", "content": f"性能测试联系记录 {i}:电话沟通采购计划。",
            "contacted_at": now.strftime("%Y-%m-%d %H:%M")}


_COMBINED = "industry=manufacturing&level=A&status=active&created_from=2023-01-01"

PAGES: tuple[Page, ...] = (
    Page("customer_list_admin", "客户列表 第1页(管理员)", "admin", ("/admin/customer/list",)),
    Page("customer_list_big", "客户列表 第1页(5000客户的经理)", "manager_big", ("/admin/customer/list",)),
    Page("customer_list_manager", "客户列表 第1页(普通经理)", "manager", ("/admin/customer/list",)),
    Page("customer_list_deep_admin", "客户列表 深分页(管理员)", "admin", ("/admin/customer/list?page={deep}",)),
    Page("customer_list_deep_big", "客户列表 深分页(5000客户的经理)", "manager_big",
         ("/admin/customer/list?page={deep}",)),
    Page("customer_combined_admin", "组合查询 4 条件(管理员)", "admin", (f"/admin/customer/list?{_COMBINED}",), 300),
    Page("customer_combined_big", "组合查询 4 条件(5000客户的经理)", "manager_big",
         (f"/admin/customer/list?{_COMBINED}",), 300),
    Page("customer_prefix_search", "客户名称前缀搜索(管理员)", "admin", ("/admin/customer/list?search={prefix}",)),
    Page("customer_prefix_search_big", "客户名称前缀搜索(5000客户的经理)", "manager_big",
         ("/admin/customer/list?search={prefix}",)),
    # search by any part / pinyin / initials / digits (core/search.py): p95 ≤ 50 ms for both users
    *(Page(f"search_{key}{suffix}", f"搜索 {title}({who})", role, (path,), 50)
      for key, title, path in (
          ("infix", "名称中间“恒信”", "/admin/customer/list?search=%E6%81%92%E4%BF%A1"),
          ("common", "常见词“机械制造”", "/admin/customer/list?search=%E6%9C%BA%E6%A2%B0%E5%88%B6%E9%80%A0"),
          ("pinyin", "全拼 hengxin", "/admin/customer/list?search=hengxin"),
          ("initials", "首字母 hxjx", "/admin/customer/list?search=hxjx"),
          ("phone", "电话中 4 位数字", "/admin/customer/list?search=6789"),
          ("contact", "联系人手机号 5 位", "/admin/linkman/list?search=13912"),
          ("contact_name", "联系人姓名 jianguo", "/admin/linkman/list?search=jianguo"),
          ("picker", "客户选择框 hengxin", "/admin/linkman/ajax/lookup?name=customer&term=hengxin"),
      )
      for suffix, who, role in (("", "管理员", "admin"), ("_big", "5000客户的经理", "manager_big"))),
    Page("product_search", "搜索 产品名称中间“打印”(管理员)", "admin", ("/admin/product/list?q=%E6%89%93%E5%8D%B0",), 50),
    Page("customer_360", "客户 360° 页", "manager_big", ("/admin/customer/360/{cid}",)),
    Page("care_workbench", "关怀工作台", "manager_big",
         ("/admin/care/workbench", "/admin/care-workbench", "/admin/customer-care/workbench")),
    Page("follow_ups_due", "待跟进联系记录", "manager_big",
         ("/admin/follow-up/due", "/admin/followups/due", "/admin/follow-ups/due")),
    Page("pipeline", "销售漏斗", "manager_big",
         ("/admin/pipeline", "/admin/opportunity/pipeline", "/admin/sales-opportunity/pipeline"), 300),
    Page("dashboard_manager", "首页仪表盘(经理)", "manager_big", ("/admin/dashboard", "/admin/"), 300),
    Page("dashboard_admin", "首页仪表盘(管理员)", "admin", ("/admin/dashboard", "/admin/"), 300),
    Page("dashboard_lead", "首页仪表盘(销售主管,整个部门)", "lead", ("/admin/dashboard", "/admin/"), 300),
    Page("customer_list_lead", "客户列表 第1页(销售主管)", "lead", ("/admin/customer/list",)),
    Page("care_workbench_lead", "关怀工作台(销售主管)", "lead", ("/admin/care/workbench",)),
    Page("care_workbench_admin", "关怀工作台(管理员,全公司)", "admin", ("/admin/care/workbench",)),
    Page("pipeline_lead", "销售漏斗(销售主管)", "lead", ("/admin/pipeline",), 300),
    # form and details pages (SQLAdmin's, through the scoped base view)
    Page("customer_edit_form", "客户 修改表单", "manager_big", ("/admin/customer/edit/{cid}",)),
    Page("customer_create_form", "客户 新建表单", "manager_big", ("/admin/customer/create",)),
    Page("customer_details", "客户 详情页", "manager_big", ("/admin/customer/details/{cid}",)),
    Page("customer_360_admin", "客户 360° 页(管理员)", "admin", ("/admin/customer/360/{cid}",)),
    Page("customer_list_viewer", "客户列表 第1页(只读用户)", "viewer", ("/admin/customer/list",)),
    Page("customer_360_viewer", "客户 360° 页(只读用户)", "viewer", ("/admin/customer/360/{cid}",)),
    Page("dashboard_viewer", "首页(只读用户)", "viewer", ("/admin/",), 300),
    Page("audit_by_user_range", "审计日志 按用户+日期范围", "admin",
         ("/admin/audit-log/list?user_id={uid}&date_from={date_from}&date_to={date_to}",
          "/admin/audit/list?user_id={uid}&date_from={date_from}&date_to={date_to}")),
    # the REST API (crm_admin/api): one page of 50 customers with a personal token (issue 17: p95 ≤ 50 ms)
    Page("api_customers_50", "API 客户列表 50 条(5000客户的经理)", "manager_big", ("/api/v1/customers?limit=50",),
         50, api=True),
    Page("api_customers_50_admin", "API 客户列表 50 条(管理员)", "admin", ("/api/v1/customers?limit=50",), 50,
         api=True),
    Page("transfer_one", "转移一个客户(提交)", "manager", ("/admin/transfer/submit",), method="POST",
         form=_transfer_form),
    Page("follow_up_save", "保存一条联系记录(提交)", "manager", ("/admin/customer/360/{cid}/follow-up",),
         method="POST", form=_follow_up_form),
)


def api_client(base_url: str, database_url: str, user_id: int) -> httpx.Client:
    """A client of the REST API with a new personal token of the user (made in the database, as the
    user's own token page does)."""
    import crm_admin.models  # noqa: F401
    from crm_admin.accounts.models import SysUser
    from crm_admin.api.tokens import create_token
    from crm_admin.core.context import SYSTEM, acting_as
    from crm_admin.core.principal import load_principal

    engine = create_engine(database_url, poolclass=NullPool)
    try:
        with acting_as(SYSTEM), Session(engine) as session, session.begin():
            user = session.get(SysUser, user_id)
            assert user is not None
            secret = create_token(session, load_principal(session.connection(), user), name="性能测试",
                                  expires_days=30).secret
    finally:
        engine.dispose()
    return httpx.Client(base_url=base_url, timeout=900, follow_redirects=False,
                        headers={"Authorization": f"Bearer {secret}"})


def load_ctx(engine: Engine, n_requests: int) -> Ctx:
    import crm_admin.models  # noqa: F401
    from crm_admin.accounts.models import SysUser
    from crm_admin.customers.models import Customer

    with engine.connect() as conn:
        def uid(username: str) -> int:
            value = conn.execute(select(SysUser.id).where(SysUser.username == username)).scalar()
            if value is None:
                raise RuntimeError(f"用户 {username} 不存在:请先运行 crm-admin generate")
            return int(value)

        managers = conn.execute(
            select(func.count()).select_from(SysUser).where(SysUser.username.like("mgr%"))
        ).scalar() or 0
        typical_n = max(2, managers // 2)
        users = {"admin": uid(admin_username(1)), "manager_big": uid(manager_username(1)),
                 "manager": uid(manager_username(typical_n)), "lead": uid(lead_username(1)),
                 "viewer": uid(viewer_username(1))}
        transfer_to = uid(manager_username(typical_n + 1))

        def first_customer(owner: int) -> int:
            return int(conn.execute(select(func.min(Customer.id)).where(Customer.manager_id == owner)).scalar() or 0)

        customers_of = {"admin": first_customer(users["manager_big"]),
                        "manager_big": first_customer(users["manager_big"]),
                        "manager": first_customer(users["manager"]), "lead": first_customer(users["manager_big"]),
                        "viewer": first_customer(users["manager_big"])}
        visible = {"admin": int(conn.execute(select(func.count()).select_from(Customer)).scalar() or 0)}
        for role in ("manager_big", "manager"):
            visible[role] = int(conn.execute(
                select(func.count()).select_from(Customer).where(Customer.manager_id == users[role])
            ).scalar() or 0)
        targets = conn.execute(
            select(Customer.id, Customer.version).where(Customer.manager_id == users["manager"],
                                                        Customer.id != customers_of["manager"])
            .order_by(Customer.id.desc()).limit(n_requests + 1)
        ).all()
    return Ctx(users=users, customers_of=customers_of, visible=visible,
               transfer_targets=[(int(a), int(b)) for a, b in targets], transfer_to=transfer_to,
               today=dt.date.today())


@dataclass
class PageResult:
    key: str
    title: str
    role: str
    status: str  # ok / skipped / error
    path: str = ""
    target_ms: int = 0
    samples_ms: list[float] = field(default_factory=list)
    cpu_ms_per_request: float | None = None
    load_average: float | None = None  # the machine's 1-minute load when the page was timed
    note: str = ""
    sql_ms: list[float] = field(default_factory=list)  # each timed answer's database time (Server-Timing)
    statements: list[int] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"key": self.key, "title": self.title, "role": self.role, "status": self.status,
                               "path": self.path, "target_ms": self.target_ms, "note": self.note}
        if self.samples_ms:
            out.update(
                n=len(self.samples_ms),
                p50_ms=round(percentile(self.samples_ms, 50), 1),
                p95_ms=round(percentile(self.samples_ms, 95), 1),
                max_ms=round(max(self.samples_ms), 1),
                cpu_ms_per_request=None if self.cpu_ms_per_request is None else round(self.cpu_ms_per_request, 2),
                load_average=self.load_average,
                meets_target=percentile(self.samples_ms, 95) <= self.target_ms,
            )
        if self.samples_ms and self.sql_ms:
            sql = percentile(self.sql_ms, 50)
            out.update(sql_p50_ms=round(sql, 2), statements=round(percentile([float(n) for n in self.statements], 50)),
                       page_to_sql=round(percentile(self.samples_ms, 50) / sql, 1) if sql > 0 else None)
        return out


_SERVER_TIMING = re.compile(r'db;dur=([\d.]+);desc="SQL (\d+)"')


def server_timing(reply: httpx.Response) -> tuple[float, int] | None:
    """The database time (ms) and statements an answer reports in its ``Server-Timing`` header."""
    found = _SERVER_TIMING.search(reply.headers.get("server-timing", ""))
    return (float(found.group(1)), int(found.group(2))) if found else None


def _ok(page: Page, reply: httpx.Response) -> tuple[bool, str]:
    if page.method == "GET":
        return reply.status_code == 200, f"HTTP {reply.status_code}"
    location = reply.headers.get("location", "")
    good = reply.status_code in (302, 303) and "error=" not in location and "login" not in location
    return good, f"HTTP {reply.status_code} {location[:160]}"


def measure_page(page: Page, client: httpx.Client, token: str, ctx: Ctx, repeat: int,
                 server_pid: int | None) -> PageResult:
    result = PageResult(page.key, page.title, page.role, "skipped", target_ms=page.target_ms)
    headers = {"X-CSRF-Token": token} if token else {}

    def send(path: str, i: int) -> httpx.Response:
        if page.method == "GET":
            return client.get(path)
        body = dict(page.form(ctx, i)) if page.form else {}
        body["csrf_token"] = token
        return client.post(path, data=body, headers=headers)

    path = ""
    warmup_s = 0.0
    for candidate in page.paths:
        candidate = ctx.fmt(candidate, page.role)
        started = time.perf_counter()
        reply = send(candidate, repeat)  # the warm-up request (its own form index, never reused)
        warmup_s = time.perf_counter() - started
        if reply.status_code in (404, 405):
            continue
        good, why = _ok(page, reply)
        if not good:
            result.status, result.path, result.note = "error", candidate, why
            return result
        path = candidate
        break
    if not path:
        result.note = "页面尚未实现(所有候选地址均为 404)"
        return result
    result.path = path
    if warmup_s > 3 and repeat > 3:
        # a page that takes seconds is far off its target already: three samples say enough
        repeat = 3
        result.note = f"预热请求 {warmup_s:.1f} 秒,只计时 3 次"
    cpu0 = server_cpu_seconds(server_pid) if server_pid else None
    for i in range(repeat):
        started = time.perf_counter()
        reply = send(path, i)
        elapsed = (time.perf_counter() - started) * 1000
        good, why = _ok(page, reply)
        if not good:
            result.status, result.note = "error", f"第 {i + 1} 次请求失败:{why}"
            return result
        result.samples_ms.append(elapsed)
        if (timed := server_timing(reply)) is not None:
            result.sql_ms.append(timed[0])
            result.statements.append(timed[1])
    if server_pid and cpu0 is not None:
        result.cpu_ms_per_request = (server_cpu_seconds(server_pid) - cpu0) * 1000 / repeat
    # wall times on a shared machine mean little without the load they were taken under
    result.load_average = round(os.getloadavg()[0], 1)
    result.status = "ok"
    return result


def measure_throughput(base_url: str, username: str, path: str, *, clients: int, seconds: float,
                       server_pid: int | None) -> dict[str, Any]:
    """Closed loop: ``clients`` signed-in clients each send the next request as soon as the last one is
    answered, for ``seconds``; requests per second, latency and the server's CPU per request."""
    import threading

    sessions = [login(base_url, username)[0] for _ in range(clients)]
    for client in sessions:
        client.get(path)  # warm
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def work(client: httpx.Client) -> None:
        mine: list[float] = []
        bad = 0
        while time.monotonic() < stop:
            started = time.perf_counter()
            if client.get(path).status_code != 200:
                bad += 1
            mine.append((time.perf_counter() - started) * 1000)
        with lock:
            latencies.extend(mine)
            errors[0] += bad

    cpu0 = server_cpu_seconds(server_pid) if server_pid else None
    started = time.monotonic()
    threads = [threading.Thread(target=work, args=(c,)) for c in sessions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    cpu = server_cpu_seconds(server_pid) - cpu0 if server_pid and cpu0 is not None else None
    for client in sessions:
        client.close()
    n = len(latencies)
    return {"path": path, "clients": clients, "seconds": round(elapsed, 1), "requests": n, "errors": errors[0],
            "requests_per_s": round(n / elapsed, 1) if elapsed else None,
            "p50_ms": round(percentile(latencies, 50), 1), "p95_ms": round(percentile(latencies, 95), 1),
            "server_cpu_ms_per_request": round(cpu * 1000 / n, 2) if cpu is not None and n else None,
            "load_average": round(os.getloadavg()[0], 1)}


# ----- every page of the menu, for each role ---------------------------------------------------

MENU_ROLES = {"admin": "管理员", "lead": "销售主管", "manager_big": "5000客户的经理", "manager": "普通经理",
              "viewer": "只读用户"}
_MENU_LINK = re.compile(r'<a class="nav-link[^"]*" href="([^"#]+)">\s*<span[^>]*>.*?</span>\s*'
                        r'<span class="nav-link-title">([^<]*)</span>', re.S)


def menu_pages(client: httpx.Client, role: str, *, skip: set[tuple[str, str]]) -> list[Page]:
    """Every entry of the menu ``role`` sees on the home page, as a page to measure (besides the pages
    above): the benchmark covers each page of each role without a list kept by hand."""
    html = client.get("/admin/").text
    pages, seen = [], set()
    for href, title in _MENU_LINK.findall(html):
        path = urlsplit(href).path
        reply = client.get(path)
        if reply.status_code in (302, 303):  # an entry that leads to its first page (imports: the first kind)
            path = urlsplit(reply.headers.get("location", path)).path
        if path in seen or (role, path) in skip:
            continue
        seen.add(path)
        slug = re.sub(r"[^a-z0-9]+", "_", path.removeprefix("/admin/").lower()).strip("_") or "home"
        pages.append(Page(f"menu_{role}_{slug}", f"菜单:{title.strip()}({MENU_ROLES[role]})", role, (path,)))
    return pages


# ----- the run ----------------------------------------------------------------------------------

def machine() -> dict[str, Any]:
    mem_kb = 0
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            mem_kb = int(fh.readline().split()[1])
    except OSError:
        pass
    # read from the machine at bench time (never written by hand): the model, clock and whether it is a
    # virtual machine, as the kernel reports them
    info: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                name, _, value = line.partition(":")
                info.setdefault(name.strip(), value.strip())
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu_model": info.get("model name", ""),
            "cpu_mhz": info.get("cpu MHz", ""), "virtual_machine": "hypervisor" in info.get("flags", "").split(),
            "load_average": os.getloadavg(), "memory_gb": round(mem_kb / 1024 / 1024, 1),
            "python": platform.python_version(), "platform": platform.platform()}


def database_info(engine: Engine) -> dict[str, Any]:
    import crm_admin.models  # noqa: F401
    from crm_admin.db import Base

    info: dict[str, Any] = {"dialect": engine.dialect.name}
    with engine.connect() as conn:
        if engine.dialect.name in ("mysql", "mariadb"):
            info["version"] = conn.exec_driver_sql("SELECT VERSION()").scalar()
            info["innodb_buffer_pool_mb"] = int(
                conn.exec_driver_sql("SELECT @@innodb_buffer_pool_size").scalar() or 0) // 2**20
        counts = {}
        for table in ("customer", "linkman", "follow_up", "customer_care", "sales_opportunity",
                      "customer_order", "order_item", "audit_log", "sys_user"):
            counts[table] = int(conn.execute(select(func.count()).select_from(Base.metadata.tables[table])).scalar() or 0)
        info["rows"] = counts
    return info


def write_results(results: dict[str, Any], out_dir: Path, label: str) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / f"{label}.json"
    md_path = out_dir / f"{label}.md"
    json_path.write_text(json.dumps(results, ensure_ascii=False, indent=2, default=str), encoding="utf-8")
    md_path.write_text(markdown_table(results), encoding="utf-8")
    return json_path, md_path


def markdown_table(results: dict[str, Any]) -> str:
    lines = [f"# 性能基准 {results.get('label', '')}", "",
             f"- 时间:{results.get('started_at', '')}",
             f"- 机器(读自 /proc/cpuinfo):{results.get('machine', {}).get('cpus')} 核 "
             f"{results.get('machine', {}).get('cpu_model', '')} {results.get('machine', {}).get('cpu_mhz', '')} MHz"
             f"{'(虚拟机)' if results.get('machine', {}).get('virtual_machine') else ''},"
             f"{results.get('machine', {}).get('memory_gb')} GB,Python {results.get('machine', {}).get('python', '')}",
             f"- 数据库:{results.get('database', {}).get('dialect')} {results.get('database', {}).get('version', '')}",
             f"- 数据量:{json.dumps(results.get('database', {}).get('rows', {}), ensure_ascii=False)}",
             f"- 命令:`{results.get('command', '')}`", "",
             "## 单请求(无并发)", "",
             f"- 服务器 worker 数:{results.get('workers')};CPU 为服务器进程(含 worker)在计时请求期间的"
             "用户态 + 内核态时间(/proc/<pid>/stat)除以请求数;负载为计时结束时的 1 分钟平均负载", "",
             "- SQL 为服务器在每个回答的 `Server-Timing` 头中报告的数据库时间(语句执行与驱动读取结果)的中位数,"
             "页面÷SQL 为 p50 除以它", "",
             "| 页面 | 角色 | p50 ms | p95 ms | max ms | 服务器 CPU ms/请求 | SQL ms | 语句 | 页面÷SQL | 负载 | 目标 p95 | 结果 |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for row in results.get("pages", []):
        if row["status"] == "ok":
            verdict = "✅" if row.get("meets_target") else "❌"
            lines.append(f"| {row['title']} | {row['role']} | {row['p50_ms']} | {row['p95_ms']} | {row['max_ms']} | "
                         f"{row.get('cpu_ms_per_request')} | {row.get('sql_p50_ms', '–')} | {row.get('statements', '–')} | "
                         f"{row.get('page_to_sql', '–')} | {row.get('load_average', '')} | {row['target_ms']} | "
                         f"{verdict} |")
        else:
            lines.append(f"| {row['title']} | {row['role']} | – | – | – | – | – | – | – | – | {row['target_ms']} | "
                         f"{row['status']}:{row['note']} |")
    for section in ("throughput", "jobs", "load"):
        if results.get(section):
            lines += ["", f"## {section}", "", "```", json.dumps(results[section], ensure_ascii=False, indent=2), "```"]
    return "\n".join(lines) + "\n"


def run_bench(
    database_url: str,
    *,
    smoke: bool = False,
    repeat: int | None = None,
    workers: int | None = None,
    base_url: str | None = None,
    out_dir: Path = RESULTS_DIR,
    label: str | None = None,
    only: list[str] | None = None,
    data_dir: Path | None = None,
    progress: Callable[[str], None] | None = None,
    pages: bool = True,
    jobs: bool = False,
    load_users: int = 0,
    load_duration_s: int = 300,
    load_spawn_rate: float = 2.0,
    throughput_clients: int = 0,
    throughput_seconds: float = 20.0,
) -> dict[str, Any]:
    """Measure every page (and optionally the jobs and a Locust load); start a server unless
    ``base_url`` points at a running one."""
    say = progress or (lambda _m: None)
    repeat = repeat or (3 if smoke else 20)
    workers = workers or (1 if smoke else max(1, os.cpu_count() or 1))
    label = label or ("smoke" if smoke else dt.datetime.now().strftime("%Y%m%d-%H%M%S"))
    data_dir = data_dir or Path(os.environ.get("CRM_DATA_DIR", "data")) / "bench"
    engine = create_engine(database_url, poolclass=NullPool)
    results: dict[str, Any] = {
        "label": label, "smoke": smoke, "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join(["crm-admin", "bench", *sys.argv[2:]]) if sys.argv[1:2] == ["bench"] else "run_bench()",
        "machine": machine(), "database": database_info(engine), "workers": workers, "repeat": repeat,
        "pages": [],
    }
    ctx = load_ctx(engine, repeat)
    engine.dispose()
    server: Server | None = None
    if not pages:
        only = ["-"]
    if base_url is None and pages:
        say(f"启动服务({workers} 个 worker)…")
        server = start_server(database_url, workers=workers, data_dir=data_dir)
        base_url = server.base_url
    try:
        if server:
            results["server_rss_mb_start"] = round(server_rss_mb(server.pid), 1)
        clients: dict[str, tuple[httpx.Client, str]] = {}
        usernames = {"admin": admin_username(1), "manager_big": manager_username(1), "lead": lead_username(1),
                     "viewer": viewer_username(1)}
        for page in PAGES:
            if only and page.key not in only:
                continue
            if page.api:
                key = f"api:{page.role}"
                if key not in clients:
                    assert base_url is not None
                    clients[key] = (api_client(base_url, database_url, ctx.users[page.role]), "")
                api, _none = clients[key]
                summary = measure_page(page, api, "", ctx, repeat, server.pid if server else None).summary()
                results["pages"].append(summary)
                say(_one_line(summary))
                continue
            if page.role not in clients:
                name = usernames.get(page.role) or _username_of(database_url, ctx.users[page.role])
                assert base_url is not None
                clients[page.role] = login(base_url, name)
            client, token = clients[page.role]
            result = measure_page(page, client, token, ctx, repeat, server.pid if server else None)
            summary = result.summary()
            results["pages"].append(summary)
            say(_one_line(summary))
        menu_keys = {key for key in only or () if key.startswith("menu_")}  # single menu pages by key
        if not only or "menu" in only or menu_keys:
            measured = {(row["role"], row["path"].split("?")[0]) for row in results["pages"]}
            for role in MENU_ROLES:
                if menu_keys and "menu" not in (only or ()) and not any(k.startswith(f"menu_{role}_") for k in menu_keys):
                    continue
                if role not in clients:
                    name = usernames.get(role) or _username_of(database_url, ctx.users[role])
                    assert base_url is not None
                    clients[role] = login(base_url, name)
                client, token = clients[role]
                for page in menu_pages(client, role, skip=measured):
                    if menu_keys and "menu" not in (only or ()) and page.key not in menu_keys:
                        continue
                    summary = measure_page(page, client, token, ctx, repeat, server.pid if server else None).summary()
                    results["pages"].append(summary)
                    say(_one_line(summary))
        if throughput_clients and base_url is not None:
            say(f"吞吐量:{throughput_clients} 个客户端同时请求客户列表 {throughput_seconds} 秒…")
            results["throughput"] = measure_throughput(
                base_url, manager_username(1), "/admin/customer/list", clients=throughput_clients,
                seconds=throughput_seconds, server_pid=server.pid if server else None)
            say(f"  {results['throughput']}")
        if server:
            results["server_rss_mb_end"] = round(server_rss_mb(server.pid), 1)
        for client, _token in clients.values():
            client.close()
    finally:
        if server:
            server.stop()
    if jobs:
        say("定时任务与批量操作…")
        results["jobs"] = run_jobs(database_url, data_dir=data_dir, workers=workers, progress=say)
    if load_users:
        say(f"Locust 混合负载:{load_users} 用户,{load_duration_s} 秒…")
        results["load"] = run_load(database_url, users=load_users, duration_s=load_duration_s,
                                   spawn_rate=load_spawn_rate, workers=workers, data_dir=data_dir,
                                   progress=say)
    results["finished_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    json_path, md_path = write_results(results, out_dir, label)
    results["files"] = [str(json_path), str(md_path)]
    return results


def _username_of(database_url: str, user_id: int) -> str:
    from crm_admin.accounts.models import SysUser

    engine = create_engine(database_url, poolclass=NullPool)
    with engine.connect() as conn:
        name = conn.execute(select(SysUser.username).where(SysUser.id == user_id)).scalar_one()
    engine.dispose()
    return str(name)


def _one_line(row: dict[str, Any]) -> str:
    if row["status"] != "ok":
        return f"  {row['title']}: {row['status']} {row['note']}"
    mark = "OK " if row["meets_target"] else "SLOW"
    return (f"  [{mark}] {row['title']}: p50 {row['p50_ms']} ms, p95 {row['p95_ms']} ms "
            f"(目标 {row['target_ms']}),CPU {row['cpu_ms_per_request']} ms/请求")


# ----- mixed load with Locust -------------------------------------------------------------------

LOCUSTFILE = Path(__file__).resolve().parents[2] / "bench" / "locustfile.py"


def run_load(
    database_url: str,
    *,
    users: int = 200,
    spawn_rate: float = 2.0,
    duration_s: int = 300,
    workers: int | None = None,
    data_dir: Path,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Start the server, run Locust headless against it, sample the server's CPU and memory."""
    import csv

    say = progress or (lambda _m: None)
    workers = workers or max(1, os.cpu_count() or 1)
    server = start_server(database_url, workers=workers, data_dir=data_dir)
    prefix = data_dir / "locust"
    samples: list[dict[str, float]] = []
    try:
        cpu0 = server_cpu_seconds(server.pid)
        db_pid = database_pid()
        db0 = server_cpu_seconds(db_pid) if db_pid else 0.0
        t0 = time.monotonic()
        env = dict(os.environ, CRM_BENCH_DATABASE_URL=database_url)
        # the users sign in one after another (ramp), then all of them work for ``duration_s``; at the end
        # each finishes the request it is in instead of being cut off mid-request
        ramp_s = math.ceil(users / spawn_rate) if spawn_rate > 0 else 0
        locust = subprocess.Popen(
            [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "-u", str(users),
             "-r", str(spawn_rate), "-t", f"{ramp_s + duration_s}s", "--stop-timeout", "30",
             "--host", server.base_url, "--csv", str(prefix), "--only-summary", "--loglevel", "WARNING"],
            env=env, stdout=subprocess.DEVNULL, stderr=open(data_dir / "locust.log", "wb"),  # noqa: SIM115
        )
        locust_cpu = 0.0
        while locust.poll() is None:
            time.sleep(5)
            locust_cpu = max(locust_cpu, server_cpu_seconds(locust.pid))
            samples.append({"t_s": round(time.monotonic() - t0, 1),
                            "rss_mb": round(server_rss_mb(server.pid), 1),
                            "cpu_s": round(server_cpu_seconds(server.pid) - cpu0, 2)})
            if len(samples) % 12 == 0:
                say(f"  负载 {samples[-1]['t_s']:.0f} 秒:服务器内存 {samples[-1]['rss_mb']} MB")
        cpu_total = server_cpu_seconds(server.pid) - cpu0
        db_cpu = server_cpu_seconds(db_pid) - db0 if db_pid else None
        elapsed = time.monotonic() - t0
    finally:
        server.stop()
    rows: list[dict[str, Any]] = []
    stats_path = Path(f"{prefix}_stats.csv")
    if not stats_path.exists():
        raise RuntimeError(f"Locust 没有产生结果:{(data_dir / 'locust.log').read_text(errors='replace')[-2000:]}")
    with open(stats_path, encoding="utf-8") as fh:
        for rec in csv.DictReader(fh):
            rows.append({
                "name": rec["Name"], "method": rec["Type"], "requests": int(rec["Request Count"]),
                "failures": int(rec["Failure Count"]), "p50_ms": float(rec["50%"] or 0),
                "p95_ms": float(rec["95%"] or 0), "p99_ms": float(rec["99%"] or 0),
                "rps": round(float(rec["Requests/s"] or 0), 2),
            })
    total = next((r for r in rows if r["name"] == "Aggregated"), None)
    pages = [r for r in rows if r["name"] != "Aggregated"]
    requests_done = total["requests"] if total else sum(r["requests"] for r in pages)
    failures_path = Path(f"{prefix}_failures.csv")
    rss = [s["rss_mb"] for s in samples]
    return {
        "users": users, "spawn_rate": spawn_rate, "ramp_s": ramp_s, "duration_s": duration_s, "workers": workers,
        "elapsed_s": round(elapsed, 1), "pages": pages, "total": total,
        "errors": total["failures"] if total else 0,
        "failures": failures_path.read_text(encoding="utf-8")[:4000] if failures_path.exists() else "",
        "throughput_rps": total["rps"] if total else None,
        "server_cpu_s": round(cpu_total, 1),
        "server_cpu_ms_per_request": round(cpu_total * 1000 / requests_done, 1) if requests_done else None,
        # where the machine's two cores went: the application, the database, the load generator itself
        "database_cpu_s": round(db_cpu, 1) if db_cpu is not None else None,
        "database_cpu_ms_per_request": round(db_cpu * 1000 / requests_done, 1) if db_cpu and requests_done
        else None,
        "locust_cpu_s": round(locust_cpu, 1),
        "server_rss_mb": {"min": min(rss, default=0), "max": max(rss, default=0),
                          "first": rss[0] if rss else 0, "last": rss[-1] if rss else 0},
        "samples": samples,
        "load_average_end": os.getloadavg(),
    }


# ----- jobs and bulk paths -----------------------------------------------------------------------

def _time_job(engine: Engine, run: Callable[[Any], Any]) -> dict[str, Any]:
    """Run a job in one transaction and roll it back: the timing includes its writes, the data stays."""
    from sqlalchemy.orm import Session

    from crm_admin.core.context import SYSTEM, acting_as

    with acting_as(SYSTEM), Session(engine) as session:
        started = time.perf_counter()
        try:
            outcome = run(session)
            session.flush()
        except Exception as exc:  # a broken job is reported, the rest of the benchmark still runs
            session.rollback()
            return {"status": "error", "note": f"{type(exc).__name__}: {str(exc)[:300]}"}
        seconds = time.perf_counter() - started
        session.rollback()
    return {"status": "ok", "seconds": round(seconds, 2), "result": str(outcome)[:300]}


def _xlsx_rows(workbook: Any) -> int:
    """Rows of the first sheet of a downloaded workbook (header included), read from its XML as a stream."""
    import zipfile

    workbook.seek(0)
    rows = 0
    tail = b""
    with zipfile.ZipFile(workbook) as archive, archive.open("xl/worksheets/sheet1.xml") as sheet:
        while chunk := sheet.read(1 << 20):
            data = tail + chunk
            rows += data.count(b"</row>")
            tail = data[-5:]  # a closing tag cut in two is whole in the next round; five bytes never hold one
    return rows


def _export(base_url: str, server_pid: int | None, path: str) -> dict[str, Any]:
    """Download an export as the administrator, sampling the server's memory while it streams."""
    import threading

    client, _token = login(base_url, admin_username(1))
    peak = [server_rss_mb(server_pid) if server_pid else 0.0]
    before = peak[0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.2):
            if server_pid:
                peak[0] = max(peak[0], server_rss_mb(server_pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    size = lines = 0
    first_byte: float | None = None
    is_xlsx = path.endswith("/xlsx")
    seconds = 0.0
    # a workbook is kept to count its rows once it is complete
    with tempfile.TemporaryFile() as kept:
        try:
            with client.stream("GET", path) as reply:
                if reply.status_code == 404:
                    return {"status": "skipped", "note": f"{path} 不存在"}
                if reply.status_code != 200:
                    return {"status": "error", "note": f"HTTP {reply.status_code}"}
                for chunk in reply.iter_bytes():
                    if first_byte is None:
                        first_byte = time.perf_counter() - started
                    size += len(chunk)
                    if is_xlsx:
                        kept.write(chunk)
                    else:
                        lines += chunk.count(b"\n")
            seconds = time.perf_counter() - started
            if is_xlsx:
                lines = _xlsx_rows(kept)
        finally:
            done.set()
            sampler.join()
            client.close()
    return {"status": "ok", "seconds": round(seconds, 2),
            "first_byte_s": round(first_byte or 0, 2), "bytes": size, "lines": lines,
            "server_rss_before_mb": round(before, 1), "server_rss_peak_mb": round(peak[0], 1),
            "server_rss_growth_mb": round(peak[0] - before, 1)}


def reclaim_evaluation(session: Any) -> dict[str, int]:
    """Every reclaim rule evaluated over the whole database, as the daily job does before it moves
    anyone: the enabled rules, or a standard set (one per level with both conditions and both
    protections, and an any-level order rule). Rule name → customers it would reclaim."""
    from crm_admin.reclaim import service as reclaim

    rules = reclaim.enabled_rules(session) or reclaim.standard_rules()
    return {r.name: r.count for r in reclaim.evaluate(session, rules, dt.datetime.now(dt.UTC))}


def run_jobs(database_url: str, *, data_dir: Path, workers: int | None = None,
             progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    say = progress or (lambda _m: None)
    import crm_admin.models  # noqa: F401

    engine = create_engine(database_url, poolclass=NullPool)
    today = dt.date.today()
    jobs: dict[str, Any] = {}
    targets = {"birthday_scan": 5.0, "care_plan_scan": 5.0, "churn_evaluation": 30.0, "reclaim_evaluation": 30.0}
    try:
        from crm_admin.care.service import create_plan_tasks, scan_birthdays

        jobs["birthday_scan"] = _time_job(engine, lambda s: scan_birthdays(s, today))
        jobs["care_plan_scan"] = _time_job(engine, lambda s: create_plan_tasks(s, today))
    except ImportError as exc:
        jobs["birthday_scan"] = {"status": "skipped", "note": str(exc)}
    try:
        from crm_admin.churn.service import evaluate

        jobs["churn_evaluation"] = _time_job(engine, lambda s: evaluate(s, today))
    except ImportError as exc:
        jobs["churn_evaluation"] = {"status": "skipped", "note": str(exc)}
    jobs["reclaim_evaluation"] = _time_job(engine, reclaim_evaluation)
    engine.dispose()
    for key, target in targets.items():
        if key in jobs and jobs[key].get("status") == "ok":
            jobs[key]["target_s"] = target
            jobs[key]["meets_target"] = jobs[key]["seconds"] <= target
        say(f"  {key}: {jobs.get(key)}")
    server = start_server(database_url, workers=workers or max(1, os.cpu_count() or 1), data_dir=data_dir)
    try:
        for kind in ("csv", "xlsx"):
            key = f"export_customers_{kind}"
            jobs[key] = _export(server.base_url, server.pid, f"/admin/customer/export/{kind}")
            if jobs[key].get("status") == "ok":
                jobs[key]["target_rss_growth_mb"] = 100
                jobs[key]["meets_target"] = jobs[key]["server_rss_growth_mb"] <= 100
            say(f"  {key}: {jobs[key]}")
        jobs["import_50k"] = run_import_bench(database_url, server.base_url, server.pid, data_dir=data_dir,
                                              progress=say)
    finally:
        server.stop()
    return jobs


SMOKE_SCALE = 0.0005  # 100 customers, a handful of users: seconds


def prepare_database(database_url: str, *, scale: float, seed: int = 42) -> None:
    """Migrate, seed and fill ``database_url`` unless it already holds generated data."""
    import crm_admin.models  # noqa: F401
    from crm_admin.core.context import SYSTEM, acting_as
    from crm_admin.customers.models import Customer
    from crm_admin.migrate import upgrade
    from crm_admin.perf.generate import generate
    from crm_admin.seeding import seed as run_seed

    engine = create_engine(database_url, poolclass=NullPool)
    try:
        upgrade(engine)
        from sqlalchemy.orm import Session

        with acting_as(SYSTEM), Session(engine) as session:
            run_seed(session)
            session.commit()
        with engine.connect() as conn:
            if conn.execute(select(Customer.id).limit(1)).first() is not None:
                return
        generate(engine, scale=scale, seed=seed)
    finally:
        engine.dispose()
