"""Import pages for customers, contacts and products (machinery in core/importing.py)."""

from __future__ import annotations

import os
from typing import Any

import anyio
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response

from crm_admin.contacts.importing import SPEC as CONTACTS
from crm_admin.core import importing
from crm_admin.core.context import current_actor
from crm_admin.core.errors import UserError
from crm_admin.core.export import attachment
from crm_admin.core.routes import route
from crm_admin.core.scope import assignable_users, check_assignee
from crm_admin.core.views import CrmBaseView, principal_of
from crm_admin.customers.importing import SPEC as CUSTOMERS
from crm_admin.db import session_factory
from crm_admin.products.importing import SPEC as PRODUCTS

SPECS: dict[str, importing.ImportSpec] = {s.key: s for s in (CUSTOMERS, CONTACTS, PRODUCTS)}
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _spec(request: Request) -> importing.ImportSpec:
    spec = SPECS.get(str(request.path_params.get("kind", "")))
    if spec is None:
        raise HTTPException(status_code=404)
    if not principal_of(request).can(spec.resource, "import"):  # the route needs *an* import permission
        raise HTTPException(status_code=403, detail="您没有导入权限。")
    return spec


# Every import route: importing something (the page then needs the permission of what it imports;
# a job belongs to the user who started it).
ANY_IMPORT = tuple((spec.resource, "import") for spec in SPECS.values())


def _job(request: Request) -> importing.ImportJob:
    job = importing.get_job(str(request.path_params.get("job_id", "")), principal_of(request), SPECS.get)
    if job is None:
        raise HTTPException(status_code=404, detail="导入任务不存在或已过期。")
    return job


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
        return principal is not None and any(principal.can(s.resource, "import") for s in SPECS.values())

    @route("/import", identity="import", permission=ANY_IMPORT)
    async def index(self, request: Request) -> Response:
        principal = principal_of(request)
        for key, spec in SPECS.items():
            if principal.can(spec.resource, "import"):
                return RedirectResponse(f"/admin/import/{key}", status_code=302)
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
                    options: dict[str, Any] = {}
                    manager = str(form.get("manager_id", "")).strip()
                    if manager and spec.key == "customer":
                        user_id = await anyio.to_thread.run_sync(_assign_to, principal, manager)
                        options["manager_id"] = user_id
                    path = await importing.save_upload_async(upload)
                    job = await anyio.to_thread.run_sync(
                        lambda: importing.start_job(spec, principal, current_actor(), path=path,
                                                    filename=upload.filename or "", options=options))
                except UserError as exc:
                    error, status = exc.message, 400
                else:
                    return RedirectResponse(f"/admin/import/job/{job.id}", status_code=303)
        managers: list[tuple[int, str]] = []
        if spec.key == "customer" and principal.can("customer", "assign"):
            managers = await anyio.to_thread.run_sync(_managers, principal)
        context = {
            "title": f"导入{spec.title}", "spec": spec, "error": error, "managers": managers,
            "kinds": [(k, s.title) for k, s in SPECS.items() if principal.can(s.resource, "import")],
            "jobs": [j.as_dict() for j in importing.jobs_of(principal, SPECS.get, spec.key)][:10],
            "csrf_token": str(request.session.get("csrf", "")),
            "max_mb": importing.MAX_UPLOAD_BYTES // 1024 // 1024,
        }
        return await self.templates.TemplateResponse(request, "imports/page.html", context, status_code=status)

    @route("/import/{kind:str}/template.{fmt:str}", identity="import-template", permission=ANY_IMPORT)
    async def template(self, request: Request) -> Response:
        spec = _spec(request)
        fmt = str(request.path_params["fmt"])
        if fmt == "xlsx":
            body = await anyio.to_thread.run_sync(importing.template_xlsx, spec)
            media = XLSX
        elif fmt == "csv":
            body, media = importing.template_csv(spec), "text/csv; charset=utf-8"
        else:
            raise HTTPException(status_code=404)
        return Response(body, media_type=media,
                        headers={"Content-Disposition": attachment(f"{spec.title}导入模板.{fmt}")})

    @route("/import/job/{job_id:str}", identity="import-job", permission=ANY_IMPORT)
    async def job_page(self, request: Request) -> Response:
        job = _job(request)
        context = {"title": f"导入{job.spec.title}", "job": job.as_dict(),
                   "csrf_token": str(request.session.get("csrf", ""))}
        return await self.templates.TemplateResponse(request, "imports/job.html", context)

    @route("/import/job/{job_id:str}/status", identity="import-job-status", permission=ANY_IMPORT)
    async def job_status(self, request: Request) -> Response:
        return JSONResponse(_job(request).as_dict())

    @route("/import/job/{job_id:str}/apply", methods=["POST"], identity="import-job-apply", permission=ANY_IMPORT)
    async def job_apply(self, request: Request) -> Response:
        job = _job(request)
        principal = principal_of(request)
        if not principal.can(job.spec.resource, "import"):
            raise HTTPException(status_code=403)
        actor = current_actor()
        try:
            await anyio.to_thread.run_sync(lambda: importing.apply_job(job, principal, actor))
        except UserError as exc:
            return JSONResponse({"ok": False, "message": exc.message}, status_code=400) \
                if "json" in request.headers.get("accept", "") else \
                RedirectResponse(f"/admin/import/job/{job.id}", status_code=303)
        if "json" in request.headers.get("accept", ""):
            return JSONResponse({"ok": True, **job.as_dict()})
        return RedirectResponse(f"/admin/import/job/{job.id}", status_code=303)

    @route("/import/job/{job_id:str}/errors.xlsx", identity="import-job-errors", permission=ANY_IMPORT)
    async def job_errors(self, request: Request) -> Response:
        job = _job(request)
        if not job.error_path or job.status in importing.RUNNING:
            raise HTTPException(status_code=404, detail="错误表尚未生成。")
        if not os.path.exists(job.error_path):
            raise HTTPException(status_code=404, detail="错误表已过期,请重新上传文件。")
        return FileResponse(job.error_path, media_type=XLSX,
                            headers={"Content-Disposition": attachment(f"{job.spec.title}导入错误表.xlsx")})


def _managers(principal: Any) -> list[tuple[int, str]]:
    with session_factory()() as session:
        return [(u.id, u.real_name or u.username) for u in assignable_users(session, principal)]


def _assign_to(principal: Any, manager: str) -> int:
    """The "assign to" of the upload form: the same check as the customer form's manager picker."""
    if not principal.can("customer", "assign"):
        raise UserError("您没有分配客户经理的权限,导入的客户只能归您本人负责。")
    with session_factory()() as session:
        return int(check_assignee(session, principal, manager, field="manager_id").id)
