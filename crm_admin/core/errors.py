"""Errors whose message is meant for the person using the system (in their language)."""

from __future__ import annotations


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
