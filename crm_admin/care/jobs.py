"""Scheduled care work: the daily birthday scan and due care plans."""

from __future__ import annotations

from sqlalchemy.orm import Session

from crm_admin.care.service import (
    create_plan_tasks,
    notify_overdue_tasks,
    notify_tasks_due,
    realign_pending_tasks,
    scan_birthdays,
)
from crm_admin.scheduler.service import JobContext, Outcome, register


@register("birthday_scan", "生日关怀扫描", "job_birthday_scan_time")
def birthday_scan_job(session: Session, ctx: JobContext) -> Outcome:
    created = scan_birthdays(session, ctx.today)
    notify_tasks_due(session, ctx.today, origin="birthday")  # in the same transaction as the tasks
    return Outcome(created, f"{ctx.today.isoformat()}:生成 {created} 条生日关怀任务")


@register("care_plans", "关怀计划任务", "job_care_plans_time")
def care_plans_job(session: Session, ctx: JobContext) -> Outcome:
    realigned = realign_pending_tasks(session)
    created = create_plan_tasks(session, ctx.today)
    notify_tasks_due(session, ctx.today, origin="plan")
    notify_overdue_tasks(session, ctx.today)
    detail = f"{ctx.today.isoformat()}:按关怀计划生成 {created} 条任务"
    if realigned:
        detail += f";{realigned} 条待办任务交给客户当前的客户经理"
    return Outcome(created, detail)
