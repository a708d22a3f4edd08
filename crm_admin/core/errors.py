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
