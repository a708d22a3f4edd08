"""Admin views of users, departments, roles and policies."""

from __future__ import annotations

import anyio
from sqladmin import BaseView, expose
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from crm_admin.accounts.models import CasbinRule, SysDept, SysRole, SysUser
from crm_admin.accounts.service import change_password
from crm_admin.core.errors import UserError
from crm_admin.core.views import CrmModelView
from crm_admin.db import transaction


class UserAdmin(CrmModelView, model=SysUser):
    name = "用户"
    name_plural = "用户管理"
    icon = "fa-solid fa-user"
    category = "系统管理"
    column_list = [SysUser.username, SysUser.real_name, SysUser.dept, SysUser.phone, SysUser.is_active,
                   SysUser.last_login_at]
    column_labels = {
        "username": "用户名", "real_name": "姓名", "dept": "部门", "phone": "电话", "email": "邮箱",
        "is_active": "启用", "must_change_password": "须修改密码", "failed_logins": "连续失败次数",
        "locked_until": "锁定至", "last_login_at": "最近登录", "last_login_ip": "最近登录 IP",
        "created_at": "创建时间", "updated_at": "更新时间",
    }
    column_details_exclude_list = ["password_hash", "session_epoch"]
    form_columns = ["username", "real_name", "dept", "phone", "email", "is_active"]
    can_create = False
    can_delete = False


class DeptAdmin(CrmModelView, model=SysDept):
    name = "部门"
    name_plural = "部门管理"
    icon = "fa-solid fa-sitemap"
    category = "系统管理"
    column_list = [SysDept.name, SysDept.parent, SysDept.sort]
    column_labels = {"name": "部门名称", "parent": "上级部门", "leader_id": "负责人", "sort": "排序",
                     "created_at": "创建时间", "updated_at": "更新时间"}
    form_columns = ["name", "parent", "sort"]


class RoleAdmin(CrmModelView, model=SysRole):
    name = "角色"
    name_plural = "角色管理"
    icon = "fa-solid fa-user-shield"
    category = "系统管理"
    column_list = [SysRole.code, SysRole.name, SysRole.data_scope, SysRole.is_active]
    column_labels = {"code": "角色编码", "name": "角色名称", "data_scope": "数据范围", "is_active": "启用",
                     "remark": "备注", "created_at": "创建时间", "updated_at": "更新时间"}
    form_excluded_columns = ["created_at", "updated_at"]


class PolicyAdmin(CrmModelView, model=CasbinRule):
    name = "权限策略"
    name_plural = "权限策略"
    icon = "fa-solid fa-key"
    category = "系统管理"
    can_create = False
    can_edit = False
    can_delete = False
    column_list = [CasbinRule.ptype, CasbinRule.v0, CasbinRule.v1, CasbinRule.v2]
    column_labels = {"ptype": "类型", "v0": "主体", "v1": "资源/角色", "v2": "操作"}


VIEWS: list[type] = [UserAdmin, DeptAdmin, RoleAdmin, PolicyAdmin]


class PasswordView(BaseView):
    """Every signed-in user may change their own password (and must, after a reset)."""

    name = "修改密码"
    icon = "fa-solid fa-lock"
    identity = "account-password"

    def is_visible(self, request: Request) -> bool:
        return False

    def is_accessible(self, request: Request) -> bool:
        return getattr(request.state, "principal", None) is not None

    @expose("/account/password", methods=["GET", "POST"], identity="account-password")
    async def password(self, request: Request) -> Response:
        user = request.state.user
        context: dict[str, object] = {
            "title": "修改密码",
            "forced": user.must_change_password,
            "csrf_token": request.session.get("csrf", ""),
        }
        status = 200
        if request.method == "POST":
            form = await request.form()
            try:
                epoch = await anyio.to_thread.run_sync(
                    _change_password_sync, user.id, str(form.get("old_password", "")),
                    str(form.get("new_password", "")), str(form.get("confirm_password", "")),
                )
            except UserError as exc:
                context["error"] = exc.message
                status = 400
            else:
                request.session["epoch"] = epoch
                if user.must_change_password:
                    return RedirectResponse(request.url_for("admin:index"), status_code=302)
                context["done"] = True
        return await self.templates.TemplateResponse(
            request, "accounts/password.html", context, status_code=status
        )


def _change_password_sync(user_id: int, old: str, new: str, confirm: str) -> int:
    with transaction() as session:
        user = session.get(SysUser, user_id, with_for_update=True)
        if user is None:
            raise UserError("用户不存在。")
        change_password(session, user, old, new, confirm)
        return user.session_epoch


VIEWS.append(PasswordView)
