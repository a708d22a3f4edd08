"""The import page of every registered importer: template, upload with dry run, progress, apply,
error workbook. URLs: ``/admin/import/<key>`` and ``/admin/import/job/<id>``."""

from __future__ import annotations

from typing import Any

import anyio
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse

from crm_admin.core.context import current_actor
from crm_admin.core.errors import UserError
from crm_admin.core.export import attachment
from crm_admin.core.params import parse_int
from crm_admin.core.routes import route
from crm_admin.core.scope import assignable_users, check_assignee
from crm_admin.core.views import CrmBaseView, principal_of
from crm_admin.db import session_factory
from crm_admin.imports import chunks, registry, runner, store, updating, workbooks
from crm_admin.imports.reading import MAX_UPLOAD_BYTES
from crm_admin.imports.spec import ImportSpec

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
# Every import route: importing something (the page then needs the permission of what it imports;
# a job belongs to the user who started it). Resolved when asked: importers register themselves.
ANY_IMPORT = registry.any_import


def _spec(request: Request) -> ImportSpec:
    spec = registry.spec(str(request.path_params.get("kind", "")))
    if spec is None:
        raise HTTPException(status_code=404)
    if not principal_of(request).can(spec.resource, "import"):  # the route needs *an* import permission
        raise HTTPException(status_code=403, detail="您没有导入权限。")
    return spec


async def _job(request: Request) -> store.Job:
    job_id, principal = str(request.path_params.get("job_id", "")), principal_of(request)
    job = await anyio.to_thread.run_sync(store.get_job, job_id, principal)
    if job is None:
        raise HTTPException(status_code=404, detail="导入任务不存在或已过期。")
    return job


def _job_url(request: Request, job: store.Job) -> str:
    return str(request.url_for("admin:view-import-job", job_id=job.id))


class ImportView(CrmBaseView):
    """数据导入: template, upload with dry run, progress, apply, error workbook."""

    name = "数据导入"
    icon = "fa-solid fa-file-import"
    category = "客户管理"
    resource = "customer"

    def is_visible(self, request: Request) -> bool:
        return self.has_permission(request, "import")

    def is_accessible(self, request: Request) -> bool:
        principal = getattr(request.state, "principal", None)
        return principal is not None and any(principal.can(s.resource, "import") for s in registry.specs().values())

    @route("/import", identity="import", permission=ANY_IMPORT)
    async def index(self, request: Request) -> Response:
        principal = principal_of(request)
        for key, spec in registry.specs().items():
            if principal.can(spec.resource, "import"):
                return RedirectResponse(request.url_for("admin:view-import-kind", kind=key), status_code=302)
        raise HTTPException(status_code=403)

    @route("/import/{kind:str}", methods=["GET", "POST"], identity="import-kind", permission=ANY_IMPORT)
    async def page(self, request: Request) -> Response:
        spec = _spec(request)
        principal = principal_of(request)
        error = ""
        status = 200
        if request.method == "POST":
            form = await request.form()
            upload = form.get("file")
            if not isinstance(upload, UploadFile) or not upload.filename:
                error, status = "请选择要上传的文件。", 400
            else:
                try:
                    options: dict[str, Any] = updating.update_options(
                        spec, principal, match_by=str(form.get("match_by", ""))[:32],
                        columns=[str(c)[:32] for c in form.getlist("update_columns")][:50],
                        blank_clears=bool(form.get("blank_clears")))
                    manager = str(form.get("manager_id", "")).strip()
                    if manager and spec.key == "customer":
                        user_id = await anyio.to_thread.run_sync(_assign_to, principal, manager)
                        options["manager_id"] = user_id
                    path = await chunks.save_upload_async(upload)
                    job = await anyio.to_thread.run_sync(
                        lambda: runner.start_job(spec, principal, current_actor(), path=path,
                                                 filename=upload.filename or "", options=options))
                except UserError as exc:
                    error, status = exc.message, 400
                else:
                    return RedirectResponse(_job_url(request, job), status_code=303)
        managers: list[tuple[int, str]] = []
        if spec.key == "customer" and principal.can("customer", "assign"):
            managers = await anyio.to_thread.run_sync(_managers, principal)
        jobs = await anyio.to_thread.run_sync(lambda: store.jobs_of(principal, spec.key, 10))
        context = {
            "title": f"导入{spec.title}", "spec": spec, "error": error, "managers": managers,
            "kinds": [(k, s.title) for k, s in registry.specs().items() if principal.can(s.resource, "import")],
            "jobs": [j.as_dict() for j in jobs],
            "csrf_token": str(request.session.get("csrf", "")),
            "max_mb": MAX_UPLOAD_BYTES // 1024 // 1024,
            "match_choices": updating.match_choices(spec) if principal.can(spec.resource, "edit") else [],
            "update_choices": updating.update_choices(spec),
        }
        return await self.templates.TemplateResponse(request, "imports/page.html", context, status_code=status)

    @route("/import/{kind:str}/template.{fmt:str}", identity="import-template", permission=ANY_IMPORT)
    async def template(self, request: Request) -> Response:
        spec = _spec(request)
        fmt = str(request.path_params["fmt"])
        if fmt == "xlsx":
            body = await anyio.to_thread.run_sync(workbooks.template_xlsx, spec)
            media = XLSX
        elif fmt == "csv":
            body, media = workbooks.template_csv(spec), "text/csv; charset=utf-8"
        else:
            raise HTTPException(status_code=404)
        return Response(body, media_type=media,
                        headers={"Content-Disposition": attachment(f"{spec.title}导入模板.{fmt}")})

    @route("/import/job/{job_id:str}", identity="import-job", permission=ANY_IMPORT)
    async def job_page(self, request: Request) -> Response:
        job = await _job(request)
        context: dict[str, Any] = {"title": f"导入{job.spec.title}", "job": job.as_dict(),
                                   "csrf_token": str(request.session.get("csrf", "")), "plan": None}
        if job.plan_size is not None and job.status not in store.RUNNING:
            # the dry run's plan of an updating import: every row's outcome, a page at a time
            show = request.query_params.get("show", "")
            show = show if show in updating.OUTCOME_LABELS else ""
            page = parse_int(request.query_params.get("page")) or 1
            rows, pages = await anyio.to_thread.run_sync(updating.plan_page, job.id, show, page)
            context["plan"] = {"rows": rows, "pages": pages, "page": min(max(page, 1), pages), "show": show,
                               "outcomes": list(updating.OUTCOME_LABELS.items())}
        return await self.templates.TemplateResponse(request, "imports/job.html", context)

    @route("/import/job/{job_id:str}/status", identity="import-job-status", permission=ANY_IMPORT)
    async def job_status(self, request: Request) -> Response:
        return JSONResponse((await _job(request)).as_dict())

    @route("/import/job/{job_id:str}/apply", methods=["POST"], identity="import-job-apply", permission=ANY_IMPORT)
    async def job_apply(self, request: Request) -> Response:
        job = await _job(request)
        principal = principal_of(request)
        if not principal.can(job.spec.resource, "import"):
            raise HTTPException(status_code=403)
        actor = current_actor()
        wants_json = "json" in request.headers.get("accept", "")
        try:
            await anyio.to_thread.run_sync(lambda: runner.apply_job(job, principal, actor))
        except UserError as exc:
            if wants_json:
                return JSONResponse({"ok": False, "message": exc.message}, status_code=400)
            return RedirectResponse(_job_url(request, job), status_code=303)
        if wants_json:
            return JSONResponse({"ok": True, **job.as_dict()})
        return RedirectResponse(_job_url(request, job), status_code=303)

    @route("/import/job/{job_id:str}/errors.xlsx", identity="import-job-errors", permission=ANY_IMPORT)
    async def job_errors(self, request: Request) -> Response:
        job = await _job(request)
        if job.errors_size is None or job.status in store.RUNNING:
            raise HTTPException(status_code=404, detail="错误表尚未生成。")
        pieces = chunks.pieces(job.id, chunks.ERRORS)
        first = await anyio.to_thread.run_sync(next, pieces, None)
        if first is None:
            raise HTTPException(status_code=404, detail="错误表已过期,请重新上传文件。")

        async def body() -> Any:
            yield first
            while (piece := await anyio.to_thread.run_sync(next, pieces, None)) is not None:
                yield piece

        return StreamingResponse(body(), media_type=XLSX, headers={
            "Content-Disposition": attachment(f"{job.spec.title}导入错误表.xlsx"),
            "Content-Length": str(job.errors_size)})


def _managers(principal: Any) -> list[tuple[int, str]]:
    with session_factory()() as session:
        return [(u.id, u.real_name or u.username) for u in assignable_users(session, principal)]


def _assign_to(principal: Any, manager: str) -> int:
    """The "assign to" of the upload form: the same check as the customer form's manager picker."""
    if not principal.can("customer", "assign"):
        raise UserError("您没有分配客户经理的权限,导入的客户只能归您本人负责。")
    with session_factory()() as session:
        return int(check_assignee(session, principal, manager, field="manager_id").id)
