"""``crm-admin audit``: checking the audit log's hash chain, and sealing its newest rows now."""

from __future__ import annotations

import sys

import click

from crm_admin import db
from crm_admin.audit import models as _audit_models  # noqa: F401  (audit_log in the metadata the check reads)
from crm_admin.audit.jobs import seal_now
from crm_admin.core.audit import describe_problem, describe_tail, verify_chain
from crm_admin.settings import get_settings


@click.group(help="审计日志工具。")
def audit() -> None:
    pass


@audit.command(help="校验审计日志的哈希链(已封存的部分),报告第一处被篡改或删除的位置,以及尚未封存的尾部。"
                    "退出码:0 完整;1 被篡改;2 有超过 10 分钟仍未封存的记录(封存任务没有运行)。")
def verify() -> None:
    engine = db.configure(get_settings().database_url, long_running=True)
    with engine.connect() as conn:
        report = verify_chain(conn)
    click.echo(describe_problem(report), err=not report.intact)
    click.echo(describe_tail(report), err=report.sealing_stalled)
    if report.sealing_stalled:
        click.echo("立即封存:crm-admin audit seal", err=True)
    if not report.intact:
        sys.exit(1)
    if report.sealing_stalled:
        sys.exit(2)


@audit.command(help="立即封存尚未封存的审计记录(把它们接入哈希链);平时由定时任务每隔几秒自动完成。")
def seal() -> None:
    db.configure(get_settings().database_url, long_running=True)
    outcome = seal_now()
    if outcome is None:
        click.echo("另一个进程正在封存审计日志,本次未执行;稍后再试。", err=True)
        sys.exit(1)
    click.echo(f"已封存 {outcome.sealed} 条审计记录;哈希链共 {outcome.head_seq} 条。")
