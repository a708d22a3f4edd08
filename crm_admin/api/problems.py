"""Errors of the API as RFC 9457 problem details (``application/problem+json``), in Chinese by default
and in English for ``Accept-Language: en``. The service layer's refusals (``core.errors.UserError``) are
the same sentences the pages show; their English comes from the message catalogs."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from crm_admin.core.i18n import translations_for

PROBLEM_TYPE = "application/problem+json"

# status → (code used in ``type``, Chinese title, English title)
TITLES: dict[int, tuple[str, str, str]] = {
    400: ("bad-request", "请求无效", "Bad request"),
    401: ("unauthorized", "未认证", "Unauthorized"),
    403: ("forbidden", "没有权限", "Forbidden"),
    404: ("not-found", "记录不存在", "Not found"),
    405: ("method-not-allowed", "不支持的请求方法", "Method not allowed"),
    409: ("conflict", "冲突", "Conflict"),
    412: ("precondition-failed", "版本不一致", "Precondition failed"),
    415: ("unsupported-media-type", "不支持的内容类型", "Unsupported media type"),
    422: ("validation-error", "数据校验失败", "Validation failed"),
    428: ("precondition-required", "缺少 If-Match", "Precondition required"),
    429: ("too-many-requests", "请求过于频繁", "Too many requests"),
    500: ("internal-error", "服务器内部错误", "Internal server error"),
    503: ("unavailable", "系统暂时不可用", "Service unavailable"),
}

# the API's own sentences and their English (the services' sentences come from the catalogs)
MESSAGES: dict[str, str] = {
    "缺少或无效的访问令牌:请在 Authorization 头中提供 Bearer 令牌。":
        "Missing or invalid access token: send a Bearer token in the Authorization header.",
    "令牌无效、已过期或已撤销,或其用户已停用或须先修改密码。":
        "The token is invalid, expired or revoked, or its user is disabled or must first change the password.",
    "您没有执行此操作的权限。": "You do not have permission to do this.",
    "记录不存在或您无权访问。": "The record does not exist or you may not access it.",
    "修改和删除须带 If-Match 头(取自该记录的 ETag)。":
        "Changes and deletes need an If-Match header (the record's ETag).",
    "该记录已被其他人修改(版本不一致),请重新读取后再修改。":
        "The record was changed by someone else (version mismatch); read it again before changing it.",
    "请求过于频繁,请稍后再试。": "Too many requests; try again later.",
    "同一个 Idempotency-Key 已用于另一个请求。": "This Idempotency-Key was already used for another request.",
    "使用同一个 Idempotency-Key 的请求正在处理中,请稍后重试。":
        "A request with this Idempotency-Key is still being processed; try again shortly.",
    "分页游标无效,请从第一页重新开始。": "The cursor is invalid; start again from the first page.",
    "请求的数据不符合要求。": "The request data is not valid.",
    "缺少必填字段。": "Field required.",
    "字段值无效。": "Invalid value.",
    "不认识的字段。": "Unknown field.",
    "请求体不是有效的 JSON。": "The request body is not valid JSON.",
    "服务器内部错误,请稍后重试。": "Internal server error; try again later.",
    "该路径不存在。": "No such path.",
    "不支持的请求方法。": "Method not allowed.",
}


def wants_english(request: Request) -> bool:
    """``Accept-Language`` whose most preferred language is English."""
    header = request.headers.get("accept-language", "")
    best, best_q = "", -1.0
    for part in header.split(","):
        lang, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        if lang and q > best_q:
            best, best_q = lang.lower(), q
    return best.startswith("en")


def translate(text: str, english: bool) -> str:
    if not english:
        return text
    if text in MESSAGES:
        return MESSAGES[text]
    return str(translations_for("en").gettext(text))


class Problem(Exception):
    """An API error answered as problem details."""

    def __init__(self, status: int, detail: str, *, errors: list[dict[str, str]] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}


def problem_response(request: Request, status: int, detail: str, *,
                     errors: list[dict[str, str]] | None = None,
                     headers: dict[str, str] | None = None) -> Response:
    english = wants_english(request)
    code, zh_title, en_title = TITLES.get(status, ("error", "错误", "Error"))
    body: dict[str, Any] = {
        "type": f"/api/v1/problems/{code}",
        "title": en_title if english else zh_title,
        "status": status,
        "detail": translate(detail, english),
        "instance": request.url.path,
    }
    if errors:
        body["errors"] = [{"field": e["field"], "message": translate(e["message"], english)} for e in errors]
    return Response(json.dumps(body, ensure_ascii=False), status_code=status, media_type=PROBLEM_TYPE,
                    headers={"Content-Language": "en" if english else "zh-CN", **(headers or {})})
