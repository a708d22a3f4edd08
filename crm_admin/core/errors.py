"""Errors whose message is meant for the person using the system (in their language)."""

from __future__ import annotations

from sqlalchemy import exc as sa_exc
from sqlalchemy.orm.exc import StaleDataError
from starlette.responses import HTMLResponse

from crm_admin import retry


class UserError(Exception):
    """A refusal the user can act on: the message is shown as is, nothing was changed."""

    status_code = 400

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class NotFound(UserError):
    status_code = 404

    def __init__(self, message: str = "记录不存在或您无权访问。") -> None:
        super().__init__(message)


class Forbidden(UserError):
    status_code = 403

    def __init__(self, message: str = "您没有执行此操作的权限。") -> None:
        super().__init__(message)


class Conflict(UserError):
    status_code = 409


def friendly_integrity_message(exc: BaseException) -> str:
    """What a refused write (unique key, foreign key, NOT NULL) means, without the database's words."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).lower()
    if "unique" in text or "duplicate" in text:
        return "保存失败:存在重复的数据(如编号、名称或信用代码已被使用),请检查后重试。"
    if "foreign key" in text or "a foreign key constraint fails" in text:
        return "操作失败:该记录仍被其他数据引用,或引用的数据不存在。"
    if "not null" in text or "cannot be null" in text:
        return "保存失败:有必填项未填写。"
    return "保存失败:数据不符合要求,请检查后重试。"


# what the person is told when a passing database error outlasted every attempt (nothing was saved),
# and when the connection broke while the change was being committed (it may have been saved)
BUSY_MESSAGE = "系统繁忙,您的操作没有完成,请稍后重试。"
OUTCOME_UNKNOWN_MESSAGE = "保存时与数据库的连接中断,无法确定操作是否已完成。请刷新页面查看最新内容,确认未保存后再重试。"


def friendly_db_error(exc: BaseException) -> str:
    """The message a user sees for any database error: never its SQL, parameters or driver text.

    The caller logs the details (``exc``) server-side; this only says what the user can do.
    """

    if isinstance(exc, UserError):
        return exc.message
    if retry.outcome_unknown(exc):
        return OUTCOME_UNKNOWN_MESSAGE
    if retry.is_transient(exc):
        return BUSY_MESSAGE
    if isinstance(exc, sa_exc.IntegrityError):
        return friendly_integrity_message(exc)
    if isinstance(exc, sa_exc.DataError):
        return "保存失败:有数据超出允许的范围或格式不正确(如数字过大、小数位过多或文字过长),请检查后重试。"
    if isinstance(exc, StaleDataError):
        return "保存失败:该记录已被其他人修改,请刷新页面查看最新内容后再修改。"
    if isinstance(exc, sa_exc.OperationalError | sa_exc.TimeoutError):
        return "数据库暂时繁忙或无法连接,您的操作没有完成,请稍后重试。"
    return "操作失败:系统内部错误,您的数据没有被修改。请稍后重试,如问题持续请联系系统管理员。"


# The look of the plain pages built without templates (the friendly 500/503 pages, the CSRF
# refusal). One text for all of them: the Content-Security-Policy allows this one inline style by
# its hash (crm_admin/web/headers.py), so a page with any other inline style is refused by the browser.
PLAIN_PAGE_STYLE = (
    'body{font-family:system-ui,"PingFang SC","Microsoft YaHei","Noto Sans CJK SC",sans-serif;'
    "background:#f5f7fb;color:#1e293b;display:flex;align-items:center;justify-content:center;"
    "min-height:100vh;margin:0}"
    ".box{background:#fff;border-radius:8px;box-shadow:0 2px 12px rgba(0,0,0,.08);padding:32px 40px;"
    "max-width:520px}"
    "h1{font-size:20px;margin:0 0 12px}p{line-height:1.7;margin:6px 0}.muted{color:#64748b;font-size:13px}"
    "a{color:#206bc4}"
)

_PLAIN_PAGE = """<!doctype html><html lang="{lang}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title>
<style>{style}</style></head><body>
<div class="box"><h1>{title}</h1><p>{message}</p>
<p class="muted">{hint}</p>{footer}</div></body></html>"""


def plain_page(status: int, title: str, message: str, hint: str = "", *, lang: str = "zh-CN",
               footer: str = "") -> HTMLResponse:
    """A page that renders whatever else is broken (no template, no database): 4xx/5xx refusals."""
    page = _PLAIN_PAGE.format(title=title, message=message, hint=hint, lang=lang, footer=footer,
                              style=PLAIN_PAGE_STYLE)
    return HTMLResponse(page, status_code=status)
