"""Failure drills under load on the local cluster (``scripts/cluster.sh drill …``).

Each drill starts the mixed load and the acknowledged-write logger through the HTTP load balancer,
breaks something, repairs it the way an operator would (start the process again), keeps the load
running, stops, and then checks on every database node that every write the app acknowledged is
there. The report (``<cluster dir>/drills/<label>.json`` and ``.md``; ``--out`` for elsewhere) gives
requests, errors and p95 before / around / after the failure, the error window, writes lost and
what the users saw.

Drills:
  writer-kill   kill -9 the database node that takes the writes; start it again; it rejoins by IST
  app-kill      kill -9 one app node; start it again
  restart-all   kill -9 every database node (power loss); restart: bootstrap from the most advanced
  backup        mariadb-backup of one node while the load runs, restored into a fresh fourth node
                that joins the cluster (then removed again)
  scale         throughput and p95 with 1, 2 and 3 app nodes on the same cluster
Every report also checks the scheduler: at most one successful run per job and business day, no
duplicate care tasks, and no job whose time today has passed without a run.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import platform
import re
import shutil
import signal
import subprocess  # nosec B404 - the drill drives mariadb-backup and the cluster's processes
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pymysql

from crm_admin.cluster import local
from crm_admin.cluster.load import Recorder, Sample, Writer, run_users, summarize
from crm_admin.perf.generate import admin_username, manager_username

DRILLS = ("writer-kill", "app-kill", "restart-all", "backup")
NODE4 = local.DbNode(4)


# ----- data the load needs -----------------------------------------------------------------------

def ensure_data(paths: local.Paths, scale: float) -> None:
    """The generated users and customers the load signs in as (``crm-admin generate``), once."""
    node = first_synced(paths)
    rows = db_rows(paths, node, "SELECT COUNT(*) FROM sys_user WHERE username = %s", manager_username(1))
    if rows and rows[0][0]:
        return
    local.say(f"  generating test data (crm-admin generate --scale {scale}) …")
    local.crm_admin(paths, "generate", "--scale", str(scale))


def first_synced(paths: local.Paths) -> local.DbNode:
    for node in [*local.DB_NODES, NODE4]:
        if local.node_pid(paths, node) and local.synced(paths, node):
            return node
    raise local.ClusterError("no synced database node")


def db_rows(paths: local.Paths, node: local.DbNode, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    conn = pymysql.connect(unix_socket=str(paths.socket(node)), user="root", database=local.DB_NAME,
                           connect_timeout=5, read_timeout=60, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args or None)
            return list(cur.fetchall())
    finally:
        conn.close()


def writer_setup(paths: local.Paths) -> dict[str, Any]:
    """Who writes and on what: the first generated manager's customers, a customer moved between two
    managers by the administrator, and a care type."""
    node = first_synced(paths)
    manager = manager_username(1)
    (uid,), = db_rows(paths, node, "SELECT id FROM sys_user WHERE username = %s", manager)
    customers = [r[0] for r in db_rows(paths, node, "SELECT id FROM customer WHERE manager_id = %s ORDER BY id LIMIT 50", uid)]
    others = [r[0] for r in db_rows(paths, node, "SELECT id FROM sys_user WHERE username IN (%s, %s) ORDER BY username",
                                    manager_username(2), manager_username(3))]
    (moved,), = db_rows(paths, node, "SELECT MIN(id) FROM customer WHERE manager_id = %s", others[0])
    (care_type,), = db_rows(paths, node, "SELECT value FROM dict_item WHERE type_code = 'care_type' AND is_active = 1 "
                                         "ORDER BY sort, id LIMIT 1")
    managers = int(db_rows(paths, node, "SELECT COUNT(*) FROM sys_user WHERE username LIKE 'mgr%'")[0][0])
    return {"manager": manager, "customers": customers, "care_type": care_type, "managers": managers,
            "transfer": {"customer_id": moved, "managers": [others[1], others[0]]}}


# ----- checks ------------------------------------------------------------------------------------

def check_writes(paths: local.Paths, run_id: str, acked_log: Path) -> dict[str, Any]:
    """Every acknowledged write, looked up on every running node."""
    acked = [json.loads(line) for line in acked_log.read_text().splitlines()] if acked_log.exists() else []
    like = f"drill-{run_id}-%"
    result: dict[str, Any] = {"acknowledged": len(acked), "by_kind": {}, "nodes": {}}
    for kind in ("follow_up", "care_feedback", "transfer"):
        result["by_kind"][kind] = sum(1 for a in acked if a["kind"] == kind)
    for node in [*local.DB_NODES, NODE4]:
        if not (local.node_pid(paths, node) and local.synced(paths, node)):
            continue
        found: set[str] = set()
        for sql in ("SELECT content FROM follow_up WHERE content LIKE %s",
                    "SELECT feedback FROM customer_care WHERE feedback LIKE %s",
                    "SELECT reason FROM customer_transfer WHERE reason LIKE %s"):
            found.update(str(r[0]) for r in db_rows(paths, node, sql, like))
        missing = [a["marker"] for a in acked if a["marker"] not in found]
        result["nodes"][node.name] = {"found": len(found), "missing": len(missing), "missing_markers": missing[:20],
                                      "unacknowledged_but_saved": len(found - {a["marker"] for a in acked})}
    result["lost"] = max((n["missing"] for n in result["nodes"].values()), default=len(acked))
    return result


def check_scheduler(paths: local.Paths) -> dict[str, Any]:
    """Job runs per business day (Asia/Shanghai): at most one success each; nothing due left unrun;
    no two care tasks for one linkman or plan and day."""
    node = first_synced(paths)
    rows = db_rows(paths, node, "SELECT job, DATE(CONVERT_TZ(started_at, '+00:00', '+08:00')) AS day, status, COUNT(*) "
                                "FROM job_run GROUP BY job, day, status ORDER BY day, job, status")
    runs: dict[str, dict[str, int]] = {}
    for job, day, status, count in rows:
        runs.setdefault(f"{day} {job}", {})[str(status)] = int(count)
    duplicates = [k for k, v in runs.items() if v.get("success", 0) > 1]
    dup_tasks = db_rows(paths, node, "SELECT COUNT(*) FROM (SELECT origin, linkman_id, plan_id, due_date, COUNT(*) c "
                                     "FROM customer_care WHERE origin IN ('birthday', 'plan') AND task_key IS NOT NULL "
                                     "GROUP BY origin, linkman_id, plan_id, due_date HAVING c > 1) d")[0][0]
    leases = db_rows(paths, node, "SELECT job, last_success_at, holder FROM job_lease ORDER BY job")
    env_times = {k: v for k, v in os.environ.items() if k.startswith("CRM_JOB_") and k.endswith("_TIME")}
    now_local = dt.datetime.now(dt.UTC) + dt.timedelta(hours=8)
    missed = []
    times = {"birthday_scan": "07:00", "care_plans": "07:05", "churn_evaluation": "02:30", "backup": "03:00",
             "import_cleanup": "04:00"}
    for job, at in times.items():
        at = env_times.get(f"CRM_JOB_{job.upper()}_TIME", at)
        hour, minute = (int(p) for p in at.split(":"))
        due = now_local.replace(hour=hour, minute=minute, second=0, microsecond=0)
        # the catch-up runs every 15 minutes: a run is only "missed" once that has had its chance
        if now_local - due > dt.timedelta(minutes=16) and runs.get(f"{now_local.date()} {job}", {}).get("success", 0) == 0:
            missed.append(job)
    return {"runs_per_day": runs, "days_with_two_successful_runs": duplicates, "duplicate_care_tasks": int(dup_tasks),
            "missed_today": missed, "leases": [[str(c) for c in r] for r in leases], "ok": not duplicates and not dup_tasks and not missed}


# ----- the drills --------------------------------------------------------------------------------

class Drill:
    def __init__(self, paths: local.Paths, *, users: int, before: float, after: float, label: str) -> None:
        self.paths, self.users, self.before, self.after, self.label = paths, users, before, after, label
        self.run_id = uuid.uuid4().hex[:8]
        self.out_dir = paths.root / "drills"
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.acked_log = self.out_dir / f"{label}-acked.jsonl"
        self.acked_log.unlink(missing_ok=True)
        self.rec = Recorder()
        self.events: list[dict[str, Any]] = []

    def event(self, what: str, **extra: Any) -> float:
        t = self.rec.now()
        self.events.append({"t": round(t, 2), "event": what, **extra})
        local.say(f"  [{t:7.1f} s] {what}" + (f" {extra}" if extra else ""))
        return t

    async def run(self, action: Callable[[Drill], Awaitable[None]]) -> dict[str, Any]:
        setup = writer_setup(self.paths)
        stop = asyncio.Event()
        base = f"http://{local.HOST}:{local.HTTP_FRONT}"
        writer = Writer(self.rec, base, self.run_id, self.acked_log, username=setup["manager"],
                        admin_user=admin_username(1), customers=setup["customers"],
                        transfer=setup["transfer"], care_type=setup["care_type"])
        self.event(f"load starts: {self.users} users (3-7 s think time) + 1 writer")
        load = asyncio.create_task(run_users(self.rec, base, self.users, stop, managers=setup["managers"]))
        writing = asyncio.create_task(writer.run(stop))
        await asyncio.sleep(self.before)
        failure_at = self.rec.now()
        await action(self)
        await asyncio.sleep(self.after)
        self.event("load stops")
        stop.set()
        await asyncio.gather(load, writing)
        end = self.rec.now()
        return self.report(writer, failure_at, end)

    def report(self, writer: Writer, failure_at: float, end: float) -> dict[str, Any]:
        samples = self.rec.samples
        bursts = error_bursts([s for s in samples if not s.ok])
        write_bursts = error_bursts([s for s in samples if not s.ok and s.name.startswith("write:")])
        steady_from = failure_at + 20
        return {
            "drill": self.label, "run_id": self.run_id, "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "machine": _machine(), "users": self.users, "events": self.events,
            "before_failure": summarize(samples, failure_at / 2, failure_at),
            "around_failure": summarize(samples, failure_at, min(end, failure_at + 20)),
            "after_failure": summarize(samples, steady_from, end) if end > steady_from else None,
            "whole_run": summarize(samples, 0, end),
            "error_bursts": bursts, "error_window_s": max((b["seconds"] for b in bursts), default=0.0),
            "write_error_window_s": max((b["seconds"] for b in write_bursts), default=0.0),
            "writes": {"sent": writer.sent, "acknowledged": writer.acked,
                       "failed": sum(1 for s in samples if s.name.startswith("write:") and not s.ok)},
            "failures": [{"t": round(s.start, 2), "seconds": round(s.seconds, 2), "request": s.name, "error": s.error}
                         for s in samples if not s.ok][:200],
            "check": check_writes(self.paths, self.run_id, self.acked_log),
            "scheduler": check_scheduler(self.paths),
            "app_db_retries": app_retries(self.paths),
            "cluster_after": local.status_data(),
        }


def app_retries(paths: local.Paths) -> dict[str, Any]:
    """What each app node ran again since it started (``db_retries`` of ``/readyz``, where the app
    reports it)."""
    import urllib.request

    out: dict[str, Any] = {}
    for app in local.app_nodes(local.configured_apps(paths)):
        try:
            with urllib.request.urlopen(f"http://{local.HOST}:{app.port}/readyz", timeout=3) as reply:  # nosec B310
                out[app.name] = json.loads(reply.read()).get("db_retries")
        except Exception as exc:
            out[app.name] = f"unavailable: {type(exc).__name__}"
    return out


def error_bursts(fails: list[Sample], gap: float = 5.0) -> list[dict[str, Any]]:
    """Failed requests grouped into bursts (less than ``gap`` seconds apart): from the start of the
    first to the end of the last failed request of each burst."""
    bursts: list[dict[str, Any]] = []
    for s in sorted(fails, key=lambda f: f.start):
        end = s.start + s.seconds
        if bursts and s.start - bursts[-1]["_end"] < gap:
            b = bursts[-1]
            b["_end"] = max(b["_end"], end)
            b["failed"] += 1
        else:
            bursts.append({"from": round(s.start, 2), "_end": end, "failed": 1})
    return [{"from": b["from"], "to": round(b["_end"], 2), "seconds": round(b["_end"] - b["from"], 2),
             "failed": b["failed"]} for b in bursts]


def _machine() -> dict[str, Any]:
    model = ""
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"cpu": model, "cores": os.cpu_count(), "python": platform.python_version(),
            "load_average_at_end": os.getloadavg()}


async def _in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.to_thread(fn, *args)


async def writer_kill(d: Drill) -> None:
    paths = d.paths
    writer = local.current_writer(paths)
    if writer is None:
        raise local.ClusterError("HAProxy sees no writer")
    pid = local.node_pid(paths, writer)
    d.event(f"kill -9 {writer.name} (the writer, pid {pid})")
    os.kill(pid or 0, signal.SIGKILL)
    new = await _wait_async(lambda: (w := local.current_writer(paths)) is not None and w != writer and w, 30)
    d.event(f"HAProxy sends writes to {new.name}")
    await _wait_async(lambda: all(local.wsrep_status(paths, n).get("wsrep_cluster_size") == "2"
                                  for n in local.DB_NODES if n != writer), 30)
    d.event("cluster size 2")
    await asyncio.sleep(15)
    d.event(f"start {writer.name} again (same data directory)")
    started = time.monotonic()
    await _in_thread(local.start_db, paths, writer)
    await _wait_async(lambda: all(local.wsrep_status(paths, n).get("wsrep_cluster_size") == "3" and local.synced(paths, n)
                                  for n in local.DB_NODES), 120)
    log = paths.errlog(writer).read_text(errors="replace")
    tail = log[log.rfind("starting as process"):] if "starting as process" in log else log
    how = "IST" if re.search(r"IST received|Receiving IST", tail) else ("SST" if "SST" in tail else "?")
    d.event(f"{writer.name} rejoined: cluster size 3, all Synced ({time.monotonic() - started:.1f} s, state transfer: {how})")


async def app_kill(d: Drill) -> None:
    paths = d.paths
    app = local.app_nodes()[0]
    pid = local.read_pid(paths.app_pid(app))
    d.event(f"kill -9 {app.name} (pid {pid})")
    os.kill(pid or 0, signal.SIGKILL)
    await _wait_async(lambda: local.app_states(paths).get(app.name, "").startswith("DOWN"), 30)
    d.event(f"HAProxy marks {app.name} down")
    await asyncio.sleep(15)
    d.event(f"start {app.name} again")
    await _in_thread(local.start_app, paths, app)
    await _in_thread(local.wait_app, paths, app)
    await _wait_async(lambda: local.app_states(paths).get(app.name, "").startswith("UP"), 30)
    d.event(f"HAProxy marks {app.name} up")


async def restart_all(d: Drill) -> None:
    paths = d.paths
    pids = {n.name: local.node_pid(paths, n) for n in local.DB_NODES}
    d.event(f"kill -9 every database node {pids} (power loss)")
    for pid in pids.values():
        os.kill(pid or 0, signal.SIGKILL)
    await _wait_async(lambda: not any(local.node_pid(paths, n) for n in local.DB_NODES), 30)
    await asyncio.sleep(5)
    d.event("restart the cluster (scripts/cluster.sh up: recover positions, bootstrap the most advanced)")
    await _in_thread(local.start_databases, paths)
    d.event("cluster back: 3 nodes Synced")
    await _wait_async(lambda: local.current_writer(paths) is not None, 30)
    d.event(f"HAProxy sends writes to {local.current_writer(paths).name}")  # type: ignore[union-attr]


async def backup_restore(d: Drill) -> None:
    """mariadb-backup of the last node while the load runs; restored as a fresh fourth node that joins."""
    paths = d.paths
    source = local.DB_NODES[-1]
    target = paths.root / "backup" / d.run_id
    target.parent.mkdir(parents=True, exist_ok=True)
    tool = shutil.which("mariadb-backup") or shutil.which("mariabackup")
    if tool is None:
        raise local.ClusterError("mariadb-backup is not installed (apt-get install -y mariadb-backup)")
    d.event(f"mariadb-backup --backup of {source.name} (hot, --galera-info) while the load runs")
    started = time.monotonic()
    await _in_thread(_run, [tool, f"--defaults-file={paths.cnf(source)}", "--backup",
                            f"--socket={paths.socket(source)}", "--user=root",
                            f"--target-dir={target}", "--galera-info"], paths.root / "backup" / f"{d.run_id}-backup.log")
    size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
    d.event(f"backup done ({time.monotonic() - started:.1f} s, {size / 1e6:.0f} MB); --prepare")
    await _in_thread(_run, [tool, "--no-defaults", "--prepare", f"--target-dir={target}"], paths.root / "backup" / f"{d.run_id}-prepare.log")
    galera_info = (target / "mariadb_backup_galera_info")
    if not galera_info.exists():
        galera_info = target / "xtrabackup_galera_info"
    uuid_, seqno = galera_info.read_text().split()[0].split(":")[:2]
    d.event(f"backup position {uuid_}:{seqno}; restoring into a fresh node4")
    node_dir = paths.node(NODE4)
    if node_dir.exists():
        await _in_thread(local.stop_db, paths, NODE4)
        shutil.rmtree(node_dir)
    node_dir.mkdir(parents=True)
    local.write_cnf(paths, NODE4)  # the new node's own settings, never the machine's /etc/mysql
    await _in_thread(_run, [tool, f"--defaults-file={paths.cnf(NODE4)}", "--copy-back", f"--target-dir={target}",
                            f"--datadir={paths.datadir(NODE4)}"],
                     paths.root / "backup" / f"{d.run_id}-copy-back.log")
    # the restored node knows its position: it asks the cluster for the rest only (IST)
    (paths.datadir(NODE4) / "grastate.dat").write_text(
        f"# GALERA saved state\nversion: 2.1\nuuid:    {uuid_}\nseqno:   {seqno}\nsafe_to_bootstrap: 0\n")
    d.event("start node4: joins the cluster from the restored data")
    started = time.monotonic()
    await _in_thread(local.start_db, paths, NODE4)
    await _wait_async(lambda: local.wsrep_status(paths, NODE4).get("wsrep_cluster_size") == "4" and local.synced(paths, NODE4), 120)
    log = paths.errlog(NODE4).read_text(errors="replace")
    how = "IST" if re.search(r"IST received|Receiving IST", log) else ("SST" if "SST" in log and "rsync SST" in log else "?")
    d.event(f"node4 Synced, cluster size 4 ({time.monotonic() - started:.1f} s, state transfer: {how})")
    d.node4_kept = True  # type: ignore[attr-defined]


def remove_node4(paths: local.Paths) -> None:
    if local.node_pid(paths, NODE4):
        local.stop_db(paths, NODE4)
    if paths.node(NODE4).exists():
        shutil.rmtree(paths.node(NODE4))


def _run(argv: list[str], log: Path) -> None:
    with open(log, "w") as out:
        done = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, check=False, timeout=1800)  # nosec B603
    if done.returncode != 0:
        raise local.ClusterError(f"{argv[0]} {argv[1]} failed; see {log}")


async def _wait_async(check: Callable[[], Any], timeout: float) -> Any:
    return await asyncio.to_thread(local.wait_for, "the cluster", check, timeout)


ACTIONS: dict[str, Callable[[Drill], Awaitable[None]]] = {
    "writer-kill": writer_kill, "app-kill": app_kill, "restart-all": restart_all, "backup": backup_restore,
}


async def scale(paths: local.Paths, *, users: int, seconds: float, think: tuple[float, float]) -> dict[str, Any]:
    """The same load with 1, 2 and 3 app nodes in the balancer (the others set to maintenance)."""
    apps = local.app_nodes(3)
    for app in apps:
        local.start_app(paths, app)
    for app in apps:
        local.wait_app(paths, app)
    local.start_haproxy(paths, apps)
    (paths.root / "apps").write_text("3")
    setup = writer_setup(paths)
    results = {}
    for count in (1, 2, 3):
        for app in apps:
            state = "ready" if app.n <= count else "maint"
            local.haproxy_command(paths, f"set server app/{app.name} state {state}")
        await asyncio.sleep(3)
        rec = Recorder()
        stop = asyncio.Event()
        task = asyncio.create_task(run_users(rec, f"http://{local.HOST}:{local.HTTP_FRONT}", users, stop,
                                             managers=setup["managers"], think=think, ramp_s=10))
        cpu0 = _cpu_seconds()
        await asyncio.sleep(seconds + 10)
        stop.set()
        await task
        cpu = _cpu_seconds() - cpu0
        results[f"{count} app node(s)"] = {**summarize(rec.samples, 10, seconds + 10),
                                           "machine_cpu_busy_pct": round(100 * cpu / ((seconds + 10) * (os.cpu_count() or 1)))}
        local.say(f"  {count} app node(s): {results[f'{count} app node(s)']}")
    for app in apps:
        local.haproxy_command(paths, f"set server app/{app.name} state ready")
    return {"drill": "scale", "users": users, "think_s": think, "seconds": seconds, "machine": _machine(),
            "results": results}


def _cpu_seconds() -> float:
    with open("/proc/stat") as fh:
        fields = [int(v) for v in fh.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields) - idle) / os.sysconf("SC_CLK_TCK")


# ----- reports -----------------------------------------------------------------------------------

def write_report(paths: local.Paths, data: dict[str, Any], out: Path | None) -> Path:
    folder = out or paths.root / "drills"
    folder.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    path = folder / f"cluster-{data['drill']}-{stamp}.json"
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2, default=str))
    path.with_suffix(".md").write_text(markdown(data))
    return path


def _bursts_text(bursts: list[dict[str, Any]]) -> str:
    return ", ".join(f"{b['from']}–{b['to']} s ({b['failed']} failed)" for b in bursts) or "none"


def markdown(data: dict[str, Any]) -> str:
    lines = [f"# Cluster drill: {data['drill']} ({data.get('when', '')})", ""]
    if data["drill"] == "scale":
        lines += [f"{data['users']} users, think time {data['think_s']} s, {data['seconds']} s per step; "
                  f"machine: {data['machine']['cpu']}, {data['machine']['cores']} cores", "",
                  "| app nodes | requests | req/s | p50 ms | p95 ms | errors | machine CPU busy |", "|---|---:|---:|---:|---:|---:|---:|"]
        for name, r in data["results"].items():
            lines.append(f"| {name} | {r['requests']} | {r['throughput_rps']} | {r['p50_ms']} | {r['p95_ms']} | "
                         f"{r['errors']} | {r['machine_cpu_busy_pct']}% |")
        return "\n".join(lines) + "\n"
    c = data["check"]
    lines += [f"- users: {data['users']} (3–7 s think time) + 1 writer; machine: {data['machine']['cpu']}, "
              f"{data['machine']['cores']} cores",
              f"- acknowledged writes: {c['acknowledged']} ({c['by_kind']}); **lost: {c['lost']}**",
              f"- longest error burst: {data['error_window_s']} s (writes: {data['write_error_window_s']} s); bursts: "
              f"{_bursts_text(data['error_bursts'])}; "
              f"writes failed: {data['writes']['failed']} of {data['writes']['sent']}",
              f"- scheduler: {'ok' if data['scheduler']['ok'] else 'PROBLEM'} "
              f"(duplicate successful runs: {data['scheduler']['days_with_two_successful_runs']}, duplicate care tasks: "
              f"{data['scheduler']['duplicate_care_tasks']}, missed today: {data['scheduler']['missed_today']})", "",
              "| phase | seconds | requests | req/s | p50 ms | p95 ms | errors |", "|---|---:|---:|---:|---:|---:|---:|"]
    for phase in ("before_failure", "around_failure", "after_failure", "whole_run"):
        r = data.get(phase)
        if r:
            lines.append(f"| {phase} | {r['seconds']} | {r['requests']} | {r['throughput_rps']} | {r['p50_ms']} | "
                         f"{r['p95_ms']} | {r['errors']} |")
    lines += ["", f"Run again by the app (db_retries of /readyz, per app node): {data.get('app_db_retries')}"]
    lines += ["", "Events:", ""] + [f"- {e['t']} s: {e['event']}" for e in data["events"]]
    if data.get("failures"):
        lines += ["", "Failed requests (time since the load began):", ""] + [
            f"- {f['t']} s (+{f['seconds']} s): {f['request']} {f['error']}" for f in data["failures"][:40]]
    kinds = data["whole_run"]["error_kinds"]
    if kinds:
        lines += ["", "Errors seen by users:", ""] + [f"- {k}: {v}" for k, v in kinds.items()]
    return "\n".join(lines) + "\n"


def main(which: str, *, users: int, before: float, after: float, scale_data: float, out: Path | None,
         think: tuple[float, float] = (3.0, 7.0), seconds: float = 60.0) -> int:
    paths = local.Paths(local.cluster_dir())
    if local.running_primary(paths) is None or local.read_pid(paths.haproxy_pid) is None:
        local.up()
    ensure_data(paths, scale_data)
    names = list(DRILLS) if which == "all" else [which]
    failed = False
    for name in names:
        local.say(f"Drill {name}")
        if name == "scale":
            data = asyncio.run(scale(paths, users=users, seconds=seconds, think=think))
        else:
            drill = Drill(paths, users=users, before=before, after=after, label=name)
            try:
                data = asyncio.run(drill.run(ACTIONS[name]))
            finally:
                if name == "backup":
                    remove_node4(paths)
            failed = failed or data["check"]["lost"] != 0 or not data["scheduler"]["ok"]
        path = write_report(paths, data, out)
        local.say(path.with_suffix(".md").read_text())
        local.say(f"report: {path}")
    return 1 if failed else 0
