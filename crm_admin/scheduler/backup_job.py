"""The daily backup job: one consistent backup file, verified as soon as it is written, then backups
older than ``backup_keep_days`` go.

A file that fails its verification is renamed to ``*.bad`` and the run fails with the reason, so the
scheduler page shows it instead of a backup nobody could restore from.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session

from crm_admin.backup import default_backup_name, make_verified_backup, prune_backups
from crm_admin.scheduler.service import JobContext, Outcome, register
from crm_admin.settings import get_settings


def backup_folder() -> Path:
    settings = get_settings()
    return Path(settings.backup_dir or (settings.data_dir / "backups"))


@register("backup", "数据库备份", "job_backup_time")
def backup_job(session: Session, ctx: JobContext) -> Outcome:
    settings = get_settings()
    folder = backup_folder()
    target = folder / (default_backup_name(settings.database_url) + ".gz")
    info = make_verified_backup(settings.database_url, target)
    assert info.manifest is not None
    removed = prune_backups(folder, settings.backup_keep_days)
    size_kb = target.stat().st_size // 1024
    return Outcome(1, f"已备份到 {target.name}({size_kb} KB,{len(info.manifest.tables)} 张表 "
                      f"{info.manifest.total_rows} 行,已校验);清理过期备份 {len(removed)} 个")
