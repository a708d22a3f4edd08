"""``crm-admin audit``: checking the audit log's hash chain."""

from __future__ import annotations

import sys

import click

from crm_admin import db
from crm_admin.audit import models as _audit_models  # noqa: F401  (audit_log in the metadata the check reads)
from crm_admin.core.audit import verify_chain
from crm_admin.settings import get_settings


@click.group(help="审计日志工具。")
def audit() -> None:
    pass


@audit.command(help="校验审计日志的哈希链,报告第一处被篡改或删除的位置。")
def verify() -> None:
    engine = db.configure(get_settings().database_url, long_running=True)
    with engine.connect() as conn:
        checked, broken = verify_chain(conn)
    if broken is None:
        click.echo(f"审计日志完整:已校验 {checked} 条记录。")
        return
    click.echo(f"审计日志被篡改:第 {checked + 1} 条记录(id={broken})与前一条记录的哈希链不符"
               f"(该记录被修改,或它之前的记录被删除)。", err=True)
    sys.exit(1)
