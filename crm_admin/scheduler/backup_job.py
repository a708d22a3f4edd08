"""The daily backup job: one consistent backup file, then backups older than ``backup_keep_days`` go."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session

from crm_admin.scheduler.service import JobContext, Outcome, register
from crm_admin.settings import get_settings


def backup_folder() -> Path:
    settings = get_settings()
    return Path(settings.backup_dir or (settings.data_dir / "backups"))


@register("backup", "数据库备份", "job_backup_time")
def backup_job(session: Session, ctx: JobContext) -> Outcome:
    from crm_admin.backup import backup, default_backup_name, prune_backups

    settings = get_settings()
    folder = backup_folder()
    target = backup(settings.database_url, folder / (default_backup_name(settings.database_url) + ".gz"))
    removed = prune_backups(folder, settings.backup_keep_days)
    size_kb = target.stat().st_size // 1024
    return Outcome(1, f"已备份到 {target.name}({size_kb} KB);清理过期备份 {len(removed)} 个")
