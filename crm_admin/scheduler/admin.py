"""Admin views of the scheduler: jobs, their leases and run history, and "run now"."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from crm_admin.core import audit
from crm_admin.core.formatting import format_datetime as fmt_dt
from crm_admin.core.i18n import Labels, tr
from crm_admin.core.pages import base_context, run_sync
from crm_admin.core.routes import route
from crm_admin.core.views import CrmBaseView, ReadOnlyModelView, principal_of
from crm_admin.db import session_factory, transaction
from crm_admin.scheduler import runner, service
from crm_admin.scheduler.models import JobRun

STATUS_LABELS = Labels({"running": "运行中", "success": "成功", "failed": "失败", "skipped": "跳过"})


class JobRunAdmin(ReadOnlyModelView, model=JobRun):
    name = "任务运行记录"
    icon = "fa-solid fa-list-check"
    category = "系统管理"
    column_list = [JobRun.job, JobRun.started_at, JobRun.finished_at, JobRun.status, JobRun.created_count,
                   JobRun.detail]
    column_labels = {"job": "任务", "run_key": "运行批次", "started_at": "开始时间", "finished_at": "结束时间",
                     "status": "状态", "created_count": "生成数量", "detail": "详情", "host": "执行节点",
                     "created_at": "创建时间", "updated_at": "更新时间"}
    column_formatters = {"status": lambda m, a: STATUS_LABELS.get(m.status, m.status),
                         "job": lambda m, a: job_label(m.job)}
    column_default_sort = [(JobRun.id, True)]

    def is_visible(self, request: Request) -> bool:
        return False  # reached from the scheduler page


def job_label(name: str) -> str:
    """A job by its name on the screen (生日关怀扫描), not its code (birthday_scan)."""
    spec = service.jobs().get(name)
    return tr(spec.label) if spec is not None else name


def _overview() -> dict[str, Any]:
    nexts = runner.next_runs()
    with session_factory()() as session:
        jobs = [
            {"name": j.name, "label": tr(j.label), "time": j.time, "last_success_at": fmt_dt(j.last_success_at),
             "holder": j.holder or "", "next_run": fmt_dt(nexts.get(j.name)),
             "last_status": STATUS_LABELS.get(j.last_run["status"], "") if j.last_run else "",
             "last_detail": (j.last_run or {}).get("detail") or ""}
            for j in service.status_overview(session)
        ]
        runs = [
            {"id": r.id, "job": job_label(r.job),
             "started_at": fmt_dt(r.started_at), "finished_at": fmt_dt(r.finished_at), "status": r.status,
             "status_label": STATUS_LABELS.get(r.status, r.status), "created": r.created_count,
             "detail": r.detail or "", "host": r.host or "", "run_key": r.run_key or ""}
            for r in service.recent_runs(session)
        ]
    return {"jobs": jobs, "runs": runs, "running": runner.running()}


def _run_now(name: str) -> service.RunResult:
    result = service.run_job(name, trigger="manual")
    with transaction() as session:
        audit.record(session, "run_job", resource="job", resource_id=name,
                     detail=f"手动运行 {name}:{result.status} {result.detail}"[:500])
    return result


class SchedulerPage(CrmBaseView):
    """定时任务: each job's time, last success, lease holder; the run history; run a job now."""

    name = "定时任务"
    icon = "fa-solid fa-clock"
    category = "系统管理"
    resource = "job"

    @route("/scheduler", identity="scheduler", permission=("job", "list"))
    async def scheduler_page(self, request: Request) -> Response:
        data = await run_sync(_overview)
        ctx = base_context(request, "定时任务", message=request.query_params.get("msg", "")[:300],
                           can_run=principal_of(request).can("job", "edit"), **data)
        return await self.templates.TemplateResponse(request, "scheduler/scheduler.html", ctx)

    @route("/scheduler/run", methods=["POST"], identity="scheduler-run", permission=("job", "edit"))
    async def scheduler_run(self, request: Request) -> Response:
        form = await request.form()
        name = str(form.get("job", ""))
        if name not in service.jobs():
            return Response("任务不存在。", status_code=404, media_type="text/plain; charset=utf-8")
        result = await run_sync(_run_now, name)
        label = STATUS_LABELS.get(result.status, result.status)
        msg = f"{job_label(name)}:{label}。{result.detail}"
        back = str(request.url_for("admin:view-scheduler"))
        return RedirectResponse(f"{back}?{urlencode({'msg': msg})}", status_code=303)


VIEWS = [SchedulerPage, JobRunAdmin]
