"""The benchmark's customer import: a 50,000-row .xlsx through the running server, as a user does it.

``run_import_bench`` builds a realistic customer workbook with the import template's Chinese headers
(dictionary labels from the seed, customer managers of the generated data, unique names, credit codes
and mobiles per run), logs in as the generated administrator, uploads it, polls the job's progress
until the dry run is validated, applies it and polls until it is done. It reports the dry-run, apply
and total (upload → done) seconds against the 60 s target, the progress samples and the server's
memory. The imported customers are deleted again afterwards (by the run tag), so the benchmark data
keeps its size; the import's audit row stays.

A database smaller than the standard data set (the ``--smoke`` one) gets a 200-row workbook.
"""

from __future__ import annotations

import json
import random
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from openpyxl import Workbook
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.pool import NullPool

from crm_admin.core.ticker import Ticker
from crm_admin.perf.client import login, server_rss_mb
from crm_admin.perf.generate import (
    BRAND,
    CITIES,
    DISTRICTS,
    INDUSTRY_WORDS,
    REGION_CODES,
    ROADS,
    admin_username,
)

ROWS = 50_000
SMOKE_ROWS = 200
SMALL_DATABASE = 10_000  # fewer customers than this: not the standard data set, a smoke-sized file
TARGET_S = 60.0
POLL_S = 0.5
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
SUFFIXES = ("有限公司",) * 8 + ("股份有限公司", "有限责任公司")


def template_headers() -> list[str]:
    """The headers of the downloadable customer template (required columns marked with *)."""
    from crm_admin.customers.importing import SPEC

    return [c.header + ("*" if c.required else "") for c in SPEC.columns]


def dictionary_labels() -> dict[str, list[str]]:
    """Dictionary type → the Chinese labels the seed installs (what users type into the sheet)."""
    from crm_admin.seeding import SEED_DIR

    data = json.loads((SEED_DIR / "dictionaries.json").read_text(encoding="utf-8"))
    return {d["code"]: [item[1] for item in d["items"]] for d in data}


def _credit_code(run: int, i: int) -> str:
    """Checksum-valid and unique per (run, row); the generator's bodies are below 10,000,000."""
    from crm_admin.customers.codes import credit_code_check_char, org_code_check_char

    body = f"9{run:02d}{i:05d}"
    first17 = "91" + REGION_CODES[i % len(REGION_CODES)] + body + org_code_check_char(body)
    return first17 + credit_code_check_char(first17)


def build_workbook(path: Path, rows: int, *, tag: str, run: int, managers: list[str]) -> None:
    """A customer import workbook as a sales assistant fills it in (write-only: constant memory)."""
    from crm_admin.customers.models import STATUS_LABELS

    labels = dictionary_labels()
    industries = labels["industry"]
    sources = labels["customer_source"]
    levels = labels["customer_level"]
    statuses = list(STATUS_LABELS.values())
    words = [w for group in INDUSTRY_WORDS.values() for w in group]
    rng = random.Random(run)
    domain = "imp" + "".join(ch for ch in tag if ch.isascii()).lower()
    wb = Workbook(write_only=True)
    ws = wb.create_sheet("客户导入")
    ws.append(template_headers())
    for i in range(rows):
        city = rng.choice(CITIES)
        name = (f"{city}{rng.choice(BRAND)}{rng.choice(BRAND)}{rng.choice(words)}{tag}{i:05d}"
                f"{rng.choice(SUFFIXES)}")
        ws.append([
            name,
            _credit_code(run, i) if rng.random() < 0.7 else None,
            rng.choice(industries),
            rng.choice(sources) if rng.random() < 0.8 else None,
            rng.choice(levels),
            rng.choice(statuses) if rng.random() < 0.6 else None,
            city,
            f"{city}市{rng.choice(DISTRICTS)}区{rng.choice(ROADS)}路{rng.randrange(1, 999)}号",
            f"13{run:02d}{i % 100_000:05d}{rng.randrange(100):02d}",
            f"info{i}@{domain}.example.cn" if rng.random() < 0.5 else None,
            f"www.{domain}-{i}.example.cn" if rng.random() < 0.2 else None,
            managers[i % len(managers)] if managers else None,
            "展会名单批量导入" if rng.random() < 0.3 else None,
        ])
    wb.save(path)


class _Sampler(Ticker):
    """The server's resident memory every 0.2 s while the import runs."""

    def __init__(self, pid: int | None) -> None:
        super().__init__(0.2)
        self.pid = pid
        self.before = server_rss_mb(pid) if pid else 0.0
        self.peak = self.before

    def tick(self) -> None:
        if self.pid:
            self.peak = max(self.peak, server_rss_mb(self.pid))


def _poll(client: httpx.Client, job_url: str, t0: float, samples: list[dict[str, Any]], until: str,
          deadline: float) -> dict[str, Any]:
    """Poll the job's status until it is no longer running; record (seconds, status, processed, total)."""
    failures = 0
    while True:
        reply = client.get(f"{job_url}/status", headers={"Accept": "application/json"})
        if reply.status_code != 200:
            failures += 1
            if failures >= 5:
                return {"status": "error", "message": f"进度查询 HTTP {reply.status_code}", "running": False}
        else:
            status = reply.json()
            samples.append({"t_s": round(time.perf_counter() - t0, 2), "status": status["status"],
                            "processed": status["processed"], "total": status["total"]})
            if status["status"] == until or not status["running"]:
                status["status_errors"] = failures
                return dict(status)
        if time.perf_counter() > deadline:
            return {"status": "error", "message": "超时", "running": False}
        time.sleep(POLL_S)


def _moved(samples: list[dict[str, Any]], status: str, rows: int) -> bool:
    """Progress was seen moving: at least two different in-between counts during ``status``."""
    seen = {s["processed"] for s in samples if s["status"] == status and 0 < s["processed"] < rows}
    return len(seen) >= 2


def run_import_bench(database_url: str, base_url: str, server_pid: int | None, *, data_dir: Path,
                     rows: int | None = None, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Upload, dry run, apply and clean up one customer import; the timings as a dict."""
    from crm_admin.customers.models import Customer

    say = progress or (lambda _m: None)
    engine = create_engine(database_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            existing = int(conn.execute(select(func.count()).select_from(Customer)).scalar() or 0)
            max_id = int(conn.execute(select(func.max(Customer.id))).scalar() or 0)
            managers = list(conn.execute(text(
                "SELECT username FROM sys_user WHERE username LIKE 'mgr%' AND is_active = 1 "
                "ORDER BY username LIMIT 20")).scalars())
        if rows is None:
            rows = ROWS if existing >= SMALL_DATABASE else SMOKE_ROWS
        run = secrets.randbelow(100)
        tag = f"导入{run:02d}{secrets.token_hex(2).upper()}"
        path = data_dir / f"import-bench-{tag}.xlsx"
        data_dir.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        build_workbook(path, rows, tag=tag, run=run, managers=managers)
        result: dict[str, Any] = {
            "rows": rows, "run_tag": tag, "file_mb": round(path.stat().st_size / 2**20, 2),
            "build_s": round(time.perf_counter() - started, 1), "target_s": TARGET_S,
        }
        say(f"  import: {rows} 行 .xlsx({result['file_mb']} MB)已生成,上传…")
        try:
            result.update(_import(base_url, server_pid, path, rows))
        finally:
            path.unlink(missing_ok=True)
            with engine.begin() as conn:
                removed = conn.execute(
                    text("DELETE FROM customer WHERE id > :max_id AND name LIKE :pattern"),
                    {"max_id": max_id, "pattern": f"%{tag}%"},
                ).rowcount
            result["removed_after"] = removed
            result["note"] = (f"导入的客户(名称含 {tag})测量后已用 SQL 删除,基准数据量不变;"
                              "导入的审计汇总行与客户编号序列保留。")
    finally:
        engine.dispose()
    return result


def _import(base_url: str, server_pid: int | None, path: Path, rows: int) -> dict[str, Any]:
    client, token = login(base_url, admin_username(1))
    samples: list[dict[str, Any]] = []
    out: dict[str, Any] = {"status": "error"}
    deadline = time.perf_counter() + (900 if rows > SMOKE_ROWS else 180)
    try:
        with _Sampler(server_pid) as memory:
            t0 = time.perf_counter()
            with open(path, "rb") as fh:
                reply = client.post("/admin/import/customer", data={"csrf_token": token},
                                    files={"file": ("客户批量导入.xlsx", fh, XLSX)})
            upload_s = time.perf_counter() - t0
            location = reply.headers.get("location", "")
            if reply.status_code != 303 or "/import/job/" not in location:
                out["note"] = f"上传失败:HTTP {reply.status_code} {reply.text[:200]}"
                return out
            job_url = location.split("?", 1)[0]
            page = client.get(job_url)
            out["job_page_status"] = page.status_code
            validated = _poll(client, job_url, t0, samples, "validated", deadline)
            dry_run_s = time.perf_counter() - t0
            out.update(upload_s=round(upload_s, 2), dry_run_s=round(dry_run_s, 2),
                       valid=validated.get("valid"), rejected=validated.get("rejected"))
            if validated.get("status") != "validated" or not validated.get("valid"):
                out["note"] = f"校验未通过:{validated.get('status')} {validated.get('message', '')}"
                return out
            t1 = time.perf_counter()
            reply = client.post(f"{job_url}/apply", data={"csrf_token": token},
                                headers={"Accept": "application/json"})
            if reply.status_code != 200:
                out["note"] = f"执行导入失败:HTTP {reply.status_code} {reply.text[:200]}"
                return out
            done = _poll(client, job_url, t0, samples, "done", deadline)
            t2 = time.perf_counter()
            errors = client.get(f"{job_url}/errors.xlsx") if done.get("rejected") else None
    finally:
        client.close()
    total_s = t2 - t0
    out.update(
        status="ok" if done.get("status") == "done" else "error",
        apply_s=round(t2 - t1, 2), seconds=round(total_s, 2),
        created=done.get("created"), rejected=done.get("rejected"), message=done.get("message"),
        status_errors=validated.get("status_errors", 0) + done.get("status_errors", 0),
        error_workbook_status=errors.status_code if errors is not None else None,
        progress_observed=_moved(samples, "validating", rows) or _moved(samples, "applying", rows),
        progress_observed_dry_run=_moved(samples, "validating", rows),
        progress_observed_apply=_moved(samples, "applying", rows),
        progress_total_known=any(s["total"] for s in samples if s["status"] == "validating"),
        rows_per_s=round(rows / total_s, 1) if total_s else None,
        server_rss_before_mb=round(memory.before, 1), server_rss_peak_mb=round(memory.peak, 1),
        server_rss_growth_mb=round(memory.peak - memory.before, 1),
        meets_target=done.get("status") == "done" and total_s <= TARGET_S,
        progress_samples=[[s["t_s"], s["processed"], s["total"], s["status"]] for s in samples],
    )
    return out
