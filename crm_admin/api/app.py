"""``/api/v1``: a FastAPI application of its own, mounted in the web app (``mounts.py``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import HTMLResponse, Response

from crm_admin.api import collections, workflows
from crm_admin.api.problems import Problem, problem_response
from crm_admin.api.routes import API_PREFIX, add_collection
from crm_admin.core.errors import UserError

# ----- the application ----------------------------------------------------------------------------

STATIC_SWAGGER = "/static/vendor/swagger-ui"


def docs_page() -> str:
    """Swagger UI from this server's own files; its start-up lives in static/js (no inline script: CSP)."""
    return f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>客户信息管理系统 API 文档</title>
<link rel="stylesheet" href="{STATIC_SWAGGER}/swagger-ui.css"></head>
<body><div id="swagger-ui" data-openapi-url="{API_PREFIX}/openapi.json"></div>
<script src="{STATIC_SWAGGER}/swagger-ui-bundle.js"></script>
<script src="/static/js/api-docs.js"></script></body></html>"""


DESCRIPTION = (Path(__file__).with_name("description.md")).read_text(encoding="utf-8")


def build_api(admin: Any, extra: list[Callable[[FastAPI], None]] | None = None) -> FastAPI:
    api = FastAPI(title="客户信息管理系统 API", version="1.0.0", description=DESCRIPTION,
                  openapi_url="/openapi.json", docs_url=None, redoc_url=None)
    api.state.admin = admin

    @api.exception_handler(Problem)
    async def on_problem(request: Request, exc: Problem) -> Response:
        return problem_response(request, exc.status, exc.detail, errors=exc.errors, headers=exc.headers)

    @api.exception_handler(UserError)
    async def on_refusal(request: Request, exc: UserError) -> Response:
        status = exc.status_code if exc.status_code != 400 else 422
        errors = [{"field": exc.field, "message": exc.message}] if exc.field else None
        return problem_response(request, status, exc.message, errors=errors)

    @api.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, exc: RequestValidationError) -> Response:
        errors = []
        for err in exc.errors():
            loc = [str(part) for part in err.get("loc", ()) if part not in ("body", "query", "path", "header")]
            kind = err.get("type", "")
            message = ("缺少必填字段。" if kind == "missing" else "不认识的字段。" if kind == "extra_forbidden"
                       else "请求体不是有效的 JSON。" if kind == "json_invalid" else "字段值无效。")
            errors.append({"field": ".".join(loc) or "body", "message": message})
        return problem_response(request, 422, "请求的数据不符合要求。", errors=errors)

    @api.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> Response:
        text = {404: "该路径不存在。", 405: "不支持的请求方法。", 401: "缺少或无效的访问令牌:请在 Authorization 头中提供 Bearer 令牌。"}
        return problem_response(request, exc.status_code, text.get(exc.status_code, str(exc.detail)),
                                headers=dict(exc.headers or {}))

    @api.exception_handler(OperationalError)
    async def on_database(request: Request, exc: OperationalError) -> Response:
        return problem_response(request, 503, "系统暂时不可用,请稍后重试。", headers={"Retry-After": "10"})

    @api.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(docs_page())

    for spec in collections.SPECS:
        add_collection(api, spec)
    workflows.register(api)
    workflows.register_services(api)
    for more in extra or ():
        more(api)
    return api
