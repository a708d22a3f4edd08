"""Scheduled churn work: the daily evaluation of the warning rules."""

from __future__ import annotations

from sqlalchemy.orm import Session

from crm_admin.churn.service import evaluate
from crm_admin.scheduler.service import JobContext, Outcome, register


@register("churn_evaluation", "流失预警评估", "job_churn_evaluation_time")
def churn_evaluation_job(session: Session, ctx: JobContext) -> Outcome:
    result = evaluate(session, ctx.today, ctx.now)
    return Outcome(
        result.opened,
        f"新增预警 {result.opened} 条,自动解除 {result.dismissed} 条,"
        f"标记流失风险客户 {result.at_risk} 个,恢复 {result.restored} 个",
    )
