"""The daily backup job: calls the backup module and keeps ``backup_keep_days`` days of files."""

from __future__ import annotations

import datetime as dt
import importlib
import time
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from crm_admin.scheduler.service import JobContext, Outcome, register
from crm_admin.settings import get_settings

# Names the backup module may give its entry point (first found wins).
ENTRY_POINTS = ("run_backup", "create_backup", "backup_database", "backup")


def _backup_callable() -> Any:
    try:
        module = importlib.import_module("crm_admin.backup")
    except ModuleNotFoundError:
        return None
    for name in ENTRY_POINTS:
        fn = getattr(module, name, None)
        if callable(fn):
            return fn
    return None


def prune(folder: Path, keep_days: int, now: float | None = None) -> int:
    """Delete backup files older than ``keep_days`` days."""
    if not folder.is_dir():
        return 0
    cutoff = (now or time.time()) - keep_days * 86400
    removed = 0
    for path in folder.iterdir():
        if path.is_file() and path.stat().st_mtime < cutoff:
            path.unlink(missing_ok=True)
            removed += 1
    return removed


@register("backup", "数据库备份", "job_backup_time")
def backup_job(session: Session, ctx: JobContext) -> Outcome:
    settings = get_settings()
    fn = _backup_callable()
    if fn is None:
        return Outcome(0, "备份模块尚未安装,本次跳过。", {"status": "skipped"})
    folder = settings.backup_dir or (settings.data_dir / "backups")
    produced = fn()
    removed = prune(Path(folder), settings.backup_keep_days)
    return Outcome(1, f"{dt.date.today().isoformat()}:备份完成 {produced or ''};清理 {removed} 个过期文件")
