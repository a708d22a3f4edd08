"""Admin views of users, departments, roles and policies."""

from __future__ import annotations

from typing import Any

import anyio
from sqladmin import BaseView
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from wtforms import SelectField

from crm_admin.accounts import second_factor
from crm_admin.accounts.models import CasbinRule, SysDept, SysRole, SysUser
from crm_admin.accounts.pages import PolicyPage, UsersPage, dept_paths
from crm_admin.accounts.policy import (
    check_role_delete,
    check_role_form,
    format_line,
    retarget_default_scope,
    valid_role_code,
)
from crm_admin.accounts.service import (
    _is_last_admin,
    change_password,
    check_dept_assignment,
    check_manage_user,
)
from crm_admin.core import audit
from crm_admin.core.audit import INFO_SILENT
from crm_admin.core.errors import Forbidden, UserError
from crm_admin.core.formatting import code_cell
from crm_admin.core.i18n import Labels, tr
from crm_admin.core.permissions import ACTIONS, RESOURCES, SCOPE_LABELS, bump_policy_version
from crm_admin.core.routes import SIGNED_IN, route
from crm_admin.core.scope import sees_everyone
from crm_admin.core.views import CrmModelView, ReadOnlyModelView, principal_of
from crm_admin.db import run_in_transaction, session_factory, transaction


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
        "last_failed_login_at": "最近登录失败", "totp_enabled_at": "两步验证启用时间",
        "created_at": "创建时间", "updated_at": "更新时间",
    }
    column_details_exclude_list = ["password_hash", "session_epoch", "totp_secret", "totp_last_step"]
    form_columns = ["real_name", "dept", "phone", "email", "is_active"]
    can_create = False
    can_delete = False

    def is_visible(self, request: Request) -> bool:
        return False  # the 用户管理 page (UsersPage) is the menu entry; this view serves details/edit

    def before_save(self, session: Session, obj: Any, data: dict[str, Any], is_created: bool,
                    request: Request) -> None:
        principal = principal_of(request)
        check_manage_user(session, principal, obj)
        dept_before = session.execute(select(SysUser.dept_id).where(SysUser.id == obj.id)).scalar()
        if obj.dept_id != dept_before:
            check_dept_assignment(session, principal, obj.dept_id)
        if obj.is_active is False and obj.id == principal.id:
            raise UserError("不能停用您自己的账号。")
        if obj.is_active is False and _is_last_admin(session, obj.id):
            raise UserError("不能停用最后一位系统管理员。")


class DeptAdmin(CrmModelView, model=SysDept):
    name = "部门"
    name_plural = "部门管理"
    icon = "fa-solid fa-sitemap"
    category = "系统管理"
    column_list = [SysDept.name, SysDept.parent, SysDept.sort]
    column_labels = {"name": "部门名称", "parent": "上级部门", "leader_id": "负责人", "sort": "排序",
                     "created_at": "创建时间", "updated_at": "更新时间"}
    form_columns = ["name", "parent", "sort"]
    column_formatters = {"name": lambda m, a: _dept_path(m.id) or m.name}

    def before_save(self, session: Session, obj: Any, data: dict[str, Any], is_created: bool,
                    request: Request) -> None:
        _only_all_scope_restructures(request)
        if not (obj.name or "").strip() or len(obj.name) > 64:
            raise UserError("部门名称不能为空,且不超过 64 个字符。")
        parent = obj.parent_id
        seen: set[int] = set()
        while parent is not None and not is_created:
            if parent == obj.id or parent in seen:
                raise UserError("上级部门不能是本部门或其下级部门。")
            seen.add(parent)
            parent = session.execute(select(SysDept.parent_id).where(SysDept.id == parent)).scalar()

    def before_delete(self, session: Session, obj: Any, request: Request) -> None:
        _only_all_scope_restructures(request)
        if session.execute(select(SysDept.id).where(SysDept.parent_id == obj.id).limit(1)).first():
            raise UserError(f"部门“{obj.name}”下还有下级部门,请先处理下级部门。")
        if session.execute(select(SysUser.id).where(SysUser.dept_id == obj.id).limit(1)).first():
            raise UserError(f"部门“{obj.name}”下还有用户,请先调整这些用户的部门。")


class RoleAdmin(CrmModelView, model=SysRole):
    name = "角色"
    name_plural = "角色管理"
    icon = "fa-solid fa-user-shield"
    category = "系统管理"
    column_list = [SysRole.code, SysRole.name, SysRole.data_scope, SysRole.is_active, SysRole.require_totp]
    column_formatters_detail = column_formatters = {
        "code": lambda m, a: code_cell(m.code),
        "data_scope": lambda m, a: SCOPE_LABELS.get(m.data_scope, m.data_scope),
    }
    column_labels = {"code": "角色编码", "name": "角色名称", "data_scope": "数据范围", "is_active": "启用",
                     "require_totp": "须两步验证", "remark": "备注", "created_at": "创建时间", "updated_at": "更新时间"}
    form_excluded_columns = ["created_at", "updated_at"]
    form_overrides = {"data_scope": SelectField}
    form_args = {"data_scope": {"choices": SCOPE_LABELS.choices, "label": "数据范围"},
                 "require_totp": {"label": "须两步验证",
                                  "description": "该角色的用户登录时须输入手机验证器的动态验证码;尚未设置的用户登录后须先完成设置。"}}

    def before_save(self, session: Session, obj: Any, data: dict[str, Any], is_created: bool,
                    request: Request) -> None:
        if not valid_role_code(obj.code or ""):
            raise UserError("角色编码须以小写字母开头,只含小写字母、数字和下划线(2–32 位)。")
        if obj.data_scope not in SCOPE_LABELS:
            raise UserError("请选择有效的数据范围。")
        scope_before: str | None = None
        active_before: bool | None = None
        if not is_created:
            old_code, scope_before, active_before = session.execute(
                select(SysRole.code, SysRole.data_scope, SysRole.is_active).where(SysRole.id == obj.id)).one()
            if old_code != obj.code:
                raise UserError("角色编码创建后不能修改(权限策略引用它)。")
            if obj.code == "admin" and (obj.data_scope != "all" or not obj.is_active):
                raise UserError("系统管理员角色必须启用,且数据范围为全部数据。")
        # the same check as the permission grid: nobody grants more than they hold
        check_role_form(session, principal_of(request), obj, is_created=is_created,
                        scope_before=scope_before, active_before=active_before)
        if scope_before is not None and scope_before != obj.data_scope:
            # the role's default scope moves its permissions that had the old default (as the grid does)
            retarget_default_scope(session, principal_of(request), obj.code, scope_before, obj.data_scope)
        # role scopes and status are part of what the gate caches: every process reloads
        bump_policy_version(session.connection())

    def before_delete(self, session: Session, obj: Any, request: Request) -> None:
        if obj.code == "admin":
            raise UserError("不能删除系统管理员角色。")
        subject = f"role:{obj.code}"
        if session.execute(select(CasbinRule.id).where(CasbinRule.ptype == "g", CasbinRule.v1 == subject)
                           .limit(1)).first():
            raise UserError(f"仍有用户拥有角色“{obj.name}”,请先调整这些用户的角色。")
        dropped = check_role_delete(session, principal_of(request), obj)
        session.info[INFO_SILENT] = True  # one summary row below instead of a row per policy line
        try:
            for rule in session.execute(select(CasbinRule).where(CasbinRule.ptype == "p",
                                                                 CasbinRule.v0 == subject)).scalars():
                session.delete(rule)  # one row at a time
            session.flush()
        finally:
            session.info.pop(INFO_SILENT, None)
        bump_policy_version(session.connection())
        if dropped:
            audit.record(session, "policy_change", resource="policy", resource_id=obj.code,
                         changes={"removed": [format_line(x) for x in dropped]},
                         detail=f"删除角色“{obj.name}”及其 {len(dropped)} 条权限")


RULE_KINDS = Labels({"p": "权限", "g": "角色分配"})


def _policy_word(words: Labels, value: str | None) -> Any:
    if not value:
        return ""
    if value == "*":
        return tr("全部")
    return words[value] if value in words else code_cell(value)


class PolicyAdmin(ReadOnlyModelView, model=CasbinRule):
    name = "权限策略"
    icon = "fa-solid fa-key"
    category = "系统管理"
    column_list = [CasbinRule.ptype, CasbinRule.v0, CasbinRule.v1, CasbinRule.v2, CasbinRule.v3]
    column_details_list = column_list
    column_labels = {"ptype": "类型", "v0": "主体", "v1": "资源/角色", "v2": "操作", "v3": "数据范围"}
    # a stored line reads in words: the resource, action and scope by name; subjects stay codes
    column_formatters = {
        "ptype": lambda m, a: RULE_KINDS.get(m.ptype, m.ptype),
        "v0": lambda m, a: code_cell(m.v0),
        "v1": lambda m, a: _policy_word(RESOURCES, m.v1) if m.ptype == "p" else code_cell(m.v1),
        "v2": lambda m, a: _policy_word(ACTIONS, m.v2) if m.ptype == "p" else "",
        "v3": lambda m, a: _policy_word(SCOPE_LABELS, m.v3) if m.ptype == "p" else "",
    }

    def is_visible(self, request: Request) -> bool:
        return False  # the 角色权限 page (PolicyPage) is the menu entry


def _only_all_scope_restructures(request: Request) -> None:
    """The department tree decides what "本部门及下级" covers: re-parenting a department under one's own
    would widen one's scope, so only users who already see all data change the tree."""
    if not sees_everyone(principal_of(request), "dept", "edit"):
        raise Forbidden("部门结构决定数据范围,只有可查看全部数据的用户才能调整部门。")


def _dept_path(dept_id: int) -> str:
    with session_factory()() as session:
        return dept_paths(session).get(dept_id, "")


VIEWS: list[type] = [UsersPage, UserAdmin, DeptAdmin, RoleAdmin, PolicyPage, PolicyAdmin]


class PasswordView(BaseView):
    """Every signed-in user may change their own password (and must, after a reset)."""

    name = "修改密码"
    icon = "fa-solid fa-lock"
    identity = "account-password"

    def is_visible(self, request: Request) -> bool:
        return False

    def is_accessible(self, request: Request) -> bool:
        return getattr(request.state, "principal", None) is not None

    @route("/account/password", methods=["GET", "POST"], identity="account-password", permission=SIGNED_IN)
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


class TwoFactorView(BaseView):
    """Every signed-in user's own second factor: set it up (scan, confirm a code, keep the recovery
    codes), make new recovery codes, or turn it off (with a current code). A user whose role requires
    one is sent here after the password and can open nothing else until it is set up."""

    name = "两步验证"
    icon = "fa-solid fa-shield-halved"
    identity = "account-two-factor"

    def is_visible(self, request: Request) -> bool:
        return False

    def is_accessible(self, request: Request) -> bool:
        return getattr(request.state, "principal", None) is not None

    @route("/account/two-factor", methods=["GET", "POST"], identity="account-two-factor", permission=SIGNED_IN)
    async def two_factor(self, request: Request) -> Response:
        principal = principal_of(request)
        user_id = request.state.user.id
        context: dict[str, Any] = {"title": "两步验证", "required": principal.second_factor_required}
        status = 200
        if request.method == "POST":
            form = await request.form()
            op = str(form.get("op") or "")[:16]
            code = str(form.get("code") or "")[:64]
            try:
                context.update(await anyio.to_thread.run_sync(_two_factor_op_sync, user_id, op, code))
            except UserError as exc:
                context["error"] = exc.message
                status = 400
        context.update(await anyio.to_thread.run_sync(_two_factor_context, user_id))
        return await self.templates.TemplateResponse(request, "accounts/two_factor.html", context,
                                                     status_code=status)


def _two_factor_context(user_id: int) -> dict[str, Any]:
    with session_factory()() as session:
        user = session.get(SysUser, user_id)
        if user is None:
            raise UserError("用户不存在。")
        return {
            "enabled": second_factor.is_enabled(user), "enabled_at": user.totp_enabled_at,
            "remaining": second_factor.remaining_recovery_codes(session, user.id),
            "enrolment": second_factor.pending_enrolment(user),
        }


def _two_factor_op_sync(user_id: int, op: str, code: str) -> dict[str, Any]:
    """One change of the user's own second factor. A wrong code is refused, and still counted (with
    its audit row) towards the lock-out: the transaction commits what the refusal wrote."""

    def change(session: Session) -> dict[str, Any] | UserError:
        user = session.get(SysUser, user_id, with_for_update=True)
        if user is None:
            return UserError("用户不存在。")
        try:
            if op == "start":
                second_factor.begin_enrolment(session, user)
                return {}
            if op == "confirm":
                return {"codes": second_factor.confirm_enrolment(session, user, code),
                        "notice": "两步验证已启用。请妥善保存下方恢复码,它们只显示这一次。"}
            if op == "recovery":
                return {"codes": second_factor.regenerate_recovery_codes(session, user, code),
                        "notice": "已生成新的恢复码,原恢复码已作废。请妥善保存,它们只显示这一次。"}
            if op == "disable":
                second_factor.disable(session, user, code)
                return {"notice": "两步验证已停用。"}
        except UserError as exc:
            return exc
        return UserError("未知的操作。")

    outcome = run_in_transaction(change, where="two-factor")
    if isinstance(outcome, UserError):
        raise outcome
    return outcome


VIEWS.append(TwoFactorView)
