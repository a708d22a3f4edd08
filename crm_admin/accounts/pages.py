"""Custom admin pages of accounts: users (create, roles, disable, reset password) and the policy editor.

Every state change is a POST carrying the CSRF token, runs in one transaction with its audit rows,
and is checked against the signed-in user's permissions (``user`` / ``policy`` resources).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import anyio
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from crm_admin.accounts import policy as policy_service
from crm_admin.accounts import second_factor, service
from crm_admin.accounts.models import SysDept, SysRole, SysUser
from crm_admin.core import audit
from crm_admin.core.errors import UserError
from crm_admin.core.params import parse_id
from crm_admin.core.permissions import ACTIONS, RESOURCES, SCOPE_LABELS, applicable
from crm_admin.core.principal import Principal
from crm_admin.core.routes import route
from crm_admin.core.views import CrmBaseView, principal_of
from crm_admin.db import session_factory, transaction


def dept_paths(session: Session) -> dict[int, str]:
    """Each department's full path (销售一部 / 华东组), for drop-downs and lists."""
    rows = session.execute(select(SysDept.id, SysDept.name, SysDept.parent_id).order_by(SysDept.sort,
                                                                                          SysDept.id)).all()
    by_id = {r[0]: r for r in rows}
    out: dict[int, str] = {}
    for dept_id in by_id:
        names: list[str] = []
        seen: set[int] = set()
        cur: int | None = dept_id
        while cur is not None and cur in by_id and cur not in seen:
            seen.add(cur)
            names.append(by_id[cur][1])
            cur = by_id[cur][2]
        out[dept_id] = " / ".join(reversed(names))
    return dict(sorted(out.items(), key=lambda kv: kv[1]))


def _int_or_none(value: Any) -> int | None:
    if value in (None, ""):
        return None
    parsed = parse_id(value)
    if parsed is None:
        raise UserError("参数无效。")
    return parsed


def _text(form: FormData, key: str, limit: int = 255) -> str:
    return str(form.get(key) or "").strip()[:limit]


class UsersPage(CrmBaseView):
    """用户管理: the list of accounts and the forms that change them."""

    name = "用户管理"
    icon = "fa-solid fa-users"
    category = "系统管理"
    resource = "user"

    @route("/users", identity="users", permission=("user", "list"))
    async def users(self, request: Request) -> Response:
        principal = principal_of(request)
        rows = await anyio.to_thread.run_sync(_list_users)
        return await self.templates.TemplateResponse(request, "accounts/users.html", {
            "title": "用户管理", "users": rows, "can_create": principal.can("user", "create"),
            "can_edit": principal.can("user", "edit"), "notice": request.query_params.get("notice", ""),
        })

    @route("/users/new", methods=["GET", "POST"], identity="users-new", permission=("user", "create"))
    async def create(self, request: Request) -> Response:
        principal = principal_of(request)
        context: dict[str, Any] = {"title": "新建用户", "user": None, "form": {}, "user_roles": []}
        status = 200
        if request.method == "POST":
            form = await request.form()
            context["form"] = {k: _text(form, k) for k in ("username", "real_name", "phone", "email", "dept_id")}
            context["user_roles"] = [str(r) for r in form.getlist("roles")]
            try:
                await anyio.to_thread.run_sync(_create_user_sync, principal, form)
            except UserError as exc:
                context["error"] = exc.message
                status = 400
            else:
                return RedirectResponse(str(request.url_for("admin:view-users")) + "?notice=created", 302)
        context.update(await anyio.to_thread.run_sync(_form_options))
        return await self.templates.TemplateResponse(request, "accounts/user_form.html", context,
                                                     status_code=status)

    @route("/users/{user_id:int}", methods=["GET", "POST"], identity="users-edit",
           permission={"GET": ("user", "view"), "POST": ("user", "edit")}, row=(SysUser, "user_id"))
    async def edit(self, request: Request) -> Response:
        principal = principal_of(request)
        user_id = int(request.path_params["user_id"])
        context: dict[str, Any] = {"title": "编辑用户", "can_edit": principal.can("user", "edit")}
        status = 200
        if request.method == "POST":
            form = await request.form()
            op = _text(form, "op", 16)
            try:
                notice = await anyio.to_thread.run_sync(_edit_user_sync, principal, user_id, op, form)
            except UserError as exc:
                context["error"] = exc.message
                status = exc.status_code if exc.status_code in (403, 404, 409) else 400
            else:
                context["notice"] = notice
        loaded = await anyio.to_thread.run_sync(_load_user_form, user_id)
        if loaded is None:
            raise HTTPException(status_code=404, detail="用户不存在。")
        context.update(loaded)
        return await self.templates.TemplateResponse(request, "accounts/user_form.html", context,
                                                     status_code=status)


def _list_users() -> list[dict[str, Any]]:
    with session_factory()() as session:
        paths = dept_paths(session)
        roles = dict(session.execute(select(SysRole.code, SysRole.name)).tuples().all())
        roles_of = service.roles_of_users(session)  # one query, not one per user
        users = session.execute(select(
            SysUser.id, SysUser.username, SysUser.real_name, SysUser.dept_id, SysUser.is_active,
            SysUser.locked_until, SysUser.last_login_at, SysUser.must_change_password,
        ).order_by(SysUser.id)).all()
        now = dt.datetime.now(dt.UTC)
        return [{
            "id": u.id, "username": u.username, "real_name": u.real_name,
            "dept": paths.get(u.dept_id or 0, ""), "is_active": u.is_active,
            "roles": "、".join(roles.get(r, r) for r in roles_of.get(u.id, ())),
            "locked": bool(u.locked_until and u.locked_until > now),
            "last_login_at": u.last_login_at, "must_change_password": u.must_change_password,
        } for u in users]


def _form_options() -> dict[str, Any]:
    with session_factory()() as session:
        return {
            "depts": list(dept_paths(session).items()),
            "roles": session.execute(select(SysRole.code, SysRole.name).where(SysRole.is_active.is_(True))
                                     .order_by(SysRole.id)).tuples().all(),
        }


def _load_user_form(user_id: int) -> dict[str, Any] | None:
    with session_factory()() as session:
        user = session.get(SysUser, user_id)
        if user is None:
            return None
        return {
            "user": {"id": user.id, "username": user.username, "is_active": user.is_active,
                     "must_change_password": user.must_change_password,
                     "totp_enabled_at": user.totp_enabled_at, "totp_pending": user.totp_secret is not None},
            "form": {"real_name": user.real_name, "phone": user.phone or "", "email": user.email or "",
                     "dept_id": str(user.dept_id or "")},
            "user_roles": service.user_roles(session, user.id),
            **_form_options(),
        }


def _roles_of(form: FormData) -> list[str]:
    return sorted({str(r) for r in form.getlist("roles") if str(r)})


def _create_user_sync(principal: Principal, form: FormData) -> None:
    password = str(form.get("password") or "")
    if password != str(form.get("confirm_password") or ""):
        raise UserError("两次输入的初始密码不一致。")
    with transaction() as session:
        service.admin_create_user(
            session, principal, username=_text(form, "username", 64), password=password,
            real_name=_text(form, "real_name", 64), roles=_roles_of(form),
            dept_id=_int_or_none(form.get("dept_id")), phone=_text(form, "phone", 32),
            email=_text(form, "email", 128),
        )


def _edit_user_sync(principal: Principal, user_id: int, op: str, form: FormData) -> str:
    with transaction() as session:
        user = session.get(SysUser, user_id, with_for_update=True)
        if user is None:
            raise UserError("用户不存在。")
        if op == "save":
            service.update_user(session, principal, user, real_name=_text(form, "real_name", 64),
                                dept_id=_int_or_none(form.get("dept_id")), phone=_text(form, "phone", 32),
                                email=_text(form, "email", 128), roles=_roles_of(form))
            return "已保存。"
        if op == "disable":
            service.set_user_active(session, principal, user, False)
            return "已停用该用户,其登录会话已失效;其名下客户保持不变,可通过客户转移交接。"
        if op == "enable":
            service.set_user_active(session, principal, user, True)
            return "已启用该用户。"
        if op == "reset":
            password = str(form.get("new_password") or "")
            if password != str(form.get("confirm_password") or ""):
                raise UserError("两次输入的新密码不一致。")
            service.reset_password(session, principal, user, password)
            return "密码已重置,该用户下次登录时须修改密码。"
        if op == "reset_2fa":
            service.check_manage_user(session, principal, user)
            if user.id == principal.id:
                raise UserError("不能在此重置您自己的两步验证,请在“两步验证”页面用当前验证码停用。")
            second_factor.admin_reset(session, user)
            return "已重置该用户的两步验证,其登录会话已失效;如其角色要求两步验证,下次登录时须重新设置。"
        if op == "unlock":
            service.check_manage_user(session, principal, user)
            user.locked_until = None
            user.failed_logins = 0

            audit.record(session, "user_unlock", resource="user", resource_id=user.id)
            return "已解除锁定。"
        raise UserError("未知的操作。")


# the permission grid and the advanced editor: shown to whoever may list the policy, saved by an editor
_READ_OR_EDIT_POLICY = {"GET": ("policy", "list"), "POST": ("policy", "edit")}


def _policy_context(principal: Principal, title: str) -> dict[str, Any]:
    return {"title": title, "can_edit": principal.can("policy", "edit")}


class PolicyPage(CrmBaseView):
    """角色与权限: the role × resource × action grid, data scopes, and the Casbin CSV editor."""

    name = "角色权限"
    icon = "fa-solid fa-key"
    category = "系统管理"
    resource = "policy"

    @route("/policy", methods=["GET", "POST"], identity="policy", permission=_READ_OR_EDIT_POLICY)
    async def grid(self, request: Request) -> Response:
        principal = principal_of(request)
        context = _policy_context(principal, "角色与权限")
        status = 200
        if request.method == "POST":
            # one checkbox per role × resource × action, and a scope per role: allow for 100 roles
            form = await request.form(max_fields=100 * (len(RESOURCES) * len(ACTIONS) + 1) + 16)
            try:
                diff = await anyio.to_thread.run_sync(_save_grid_sync, principal, form)
            except UserError as exc:
                context["error"] = exc.message
                status = exc.status_code if exc.status_code == 403 else 400
            else:
                context["notice"] = ("没有变化。" if diff.empty else
                                     f"已保存:新增 {len(diff.added)} 条、删除 {len(diff.removed)} 条权限,"
                                     f"{len(diff.scopes)} 个角色的数据范围已变更。已即时生效。")
        context.update(await anyio.to_thread.run_sync(_grid_context))
        return await self.templates.TemplateResponse(request, "accounts/policy.html", context, status_code=status)

    @route("/policy/advanced", methods=["GET", "POST"], identity="policy-advanced",
           permission=_READ_OR_EDIT_POLICY)
    async def advanced(self, request: Request) -> Response:
        principal = principal_of(request)
        context = _policy_context(principal, "权限策略(高级)")
        status = 200
        if request.method == "GET":
            context["text"] = await anyio.to_thread.run_sync(_policy_text)
        else:
            form = await request.form()
            text = str(form.get("text") or "")
            upload = form.get("file")
            if upload is not None and hasattr(upload, "read"):
                raw = await upload.read()  # type: ignore[union-attr]
                if raw:
                    if len(raw) > 1_000_000:
                        text = ""
                        context["error"] = "文件过大。"
                    else:
                        try:
                            text = raw.decode("utf-8-sig")
                        except UnicodeDecodeError:
                            context["error"] = "文件须为 UTF-8 编码的 CSV。"
            context["text"] = text
            apply = _text(form, "op", 16) == "apply"
            if "error" not in context:
                try:
                    result = await anyio.to_thread.run_sync(_advanced_sync, principal, text, apply)
                except UserError as exc:
                    context["error"] = exc.message
                    status = exc.status_code if exc.status_code == 403 else 400
                else:
                    context.update(result)
            else:
                status = 400
        return await self.templates.TemplateResponse(request, "accounts/policy_advanced.html", context,
                                                     status_code=status)

    @route("/policy/export", identity="policy-export", permission=("policy", "export"))
    async def export(self, request: Request) -> Response:
        text = await anyio.to_thread.run_sync(_policy_text)

        def audit_export() -> None:
            audit.record_now("export", resource="policy", detail="导出权限策略 CSV")

        await anyio.to_thread.run_sync(audit_export)
        return Response("\ufeff" + text, media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": 'attachment; filename="policy.csv"'})


def _policy_text() -> str:
    with session_factory()() as session:
        return policy_service.policy_csv(session)


def _grid_context() -> dict[str, Any]:
    with session_factory()() as session:
        lines = policy_service.current_lines(session)
        roles = session.execute(select(SysRole).order_by(SysRole.id)).scalars().all()
        granted: set[str] = set()
        wildcard: set[str] = set()
        for line in lines:
            if line[0] != "p":
                continue
            code = line[1].removeprefix("role:")
            if "*" in line[2:4]:
                wildcard.add(code)
            for res, act in policy_service.expand(line[2], line[3]):
                granted.add(f"{code}|{res}|{act}")
        defaults = {r.code: r.data_scope for r in roles}
        names = {r.code: r.name for r in roles}
        return {
            "roles": [{"code": r.code, "name": r.name, "data_scope": r.data_scope, "is_active": r.is_active,
                       "wildcard": r.code in wildcard} for r in roles],
            "exceptions": [
                {"key": f"{code}|{res}|{act}", "role": names.get(code, code), "resource": RESOURCES.get(res, res),
                 "action": ACTIONS.get(act, act), "scope": scope, "default": defaults.get(code, "self")}
                for code, res, act, scope in policy_service.scope_exceptions(lines, defaults)
            ],
            "resources": list(RESOURCES.items()), "actions": list(ACTIONS.items()),
            "scopes": list(SCOPE_LABELS.items()), "granted": granted,
            "applicable": {f"{res}|{act}" for res in RESOURCES for act in ACTIONS if applicable(res, act)},
        }


def _save_grid_sync(principal: Principal, form: FormData) -> policy_service.PolicyDiff:
    grid: set[tuple[str, str, str]] = set()
    for value in form.getlist("perm"):
        parts = str(value).split("|")
        if len(parts) != 3 or parts[1] not in RESOURCES or parts[2] not in ACTIONS:
            raise UserError("提交的权限项无效。")
        grid.add((parts[0], parts[1], parts[2]))
    with transaction() as session:
        defaults = {code: scope for code, scope in session.execute(select(SysRole.code, SysRole.data_scope))}
        role_codes = list(defaults)
        exceptions = _grid_exceptions(form, role_codes)
        if any(r not in role_codes for r, _res, _act in grid):
            raise UserError("提交的角色不存在。")
        scopes = {code: str(form.get(f"scope:{code}")) for code in role_codes if form.get(f"scope:{code}")}
        before = policy_service.current_lines(session)
        after = policy_service.grid_lines(before, grid, role_codes, defaults=defaults,
                                          new_defaults={**defaults, **scopes}, exceptions=exceptions)
        return policy_service.apply_policy(session, principal, after, scopes=scopes, source="权限矩阵")


def _grid_exceptions(form: FormData, role_codes: list[str]) -> dict[tuple[str, str, str], str]:
    """The grid's scope exceptions: the listed ones (an empty choice drops one) and the added one."""
    found: dict[tuple[str, str, str], str] = {}
    pairs = [(str(k).removeprefix("except:"), str(v)) for k, v in form.multi_items() if str(k).startswith("except:")]
    added = [str(form.get(k) or "") for k in ("add_role", "add_resource", "add_action", "add_scope")]
    if all(added):
        pairs.append(("|".join(added[:3]), added[3]))
    for key, scope in pairs:
        parts = key.split("|")
        if len(parts) != 3 or parts[0] not in role_codes or parts[1] not in RESOURCES or parts[2] not in ACTIONS:
            raise UserError("提交的数据范围例外无效。")
        if not applicable(parts[1], parts[2]):
            raise UserError(f"操作“{ACTIONS[parts[2]]}”不适用于资源“{RESOURCES[parts[1]]}”。")
        if scope and scope not in SCOPE_LABELS:
            raise UserError("数据范围无效。")
        if scope:
            found[(parts[0], parts[1], parts[2])] = scope
    return found


def _advanced_sync(principal: Principal, text: str, apply: bool) -> dict[str, Any]:
    with transaction() as session:
        after = policy_service.validate_lines(session, policy_service.parse_csv(text))
        before = policy_service.current_lines(session)
        diff = policy_service.diff_policy(before, after)
        if not diff.empty:
            policy_service.check_change(session, principal, before, after, diff)
        out: dict[str, Any] = {
            "preview": True,
            "added": [policy_service.format_line(x) for x in diff.added],
            "removed": [policy_service.format_line(x) for x in diff.removed],
        }
        if apply and not diff.empty:
            policy_service.apply_policy(session, principal, after, source="高级编辑")
            out["notice"] = f"已保存:新增 {len(diff.added)} 条,删除 {len(diff.removed)} 条,已即时生效。"
            out["preview"] = False
            out["text"] = policy_service.policy_csv(session)
        elif apply:
            out["notice"] = "没有变化。"
        else:
            session.rollback()
        return out
