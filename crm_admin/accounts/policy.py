"""Editing the Casbin policy: validation, privilege checks, diff, and the one way to save it.

A permission line carries its data scope: ``p, role:sales_lead, customer, view, dept_tree``. Read from the
database every ``p`` line is a 5-tuple (a line stored without a scope has its role's default scope,
``sys_role.data_scope``); a 4-field line typed into the editor gets the role's default.

The policy lives in ``casbin_rule`` (the database is the source of truth after the first seed).
Every change goes through ``apply_policy``: values are validated (Casbin's tokenizer splits on
commas even inside quotes, so one bad value breaks every later decision), an editor may only
grant what they hold themselves, the last administrator cannot be removed, rows are added and
removed one at a time (never the adapter's ``save_policy`` or plural ``remove_policies``), the
policy version is bumped in the same transaction so every process reloads, and one
``policy_change`` audit row carries the before/after.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from crm_admin.accounts.models import DATA_SCOPES, CasbinRule, SysRole, SysUser
from crm_admin.core import audit
from crm_admin.core.audit import INFO_SILENT
from crm_admin.core.errors import Forbidden, UserError
from crm_admin.core.permissions import (
    ACTIONS,
    RESOURCES,
    SCOPE_LABELS,
    SCOPE_ORDER,
    applicable,
    bump_policy_version,
)
from crm_admin.core.principal import Principal

# ("p", "role:manager", "customer", "list", "self") or ("g", "u:3", "role:manager")
Line = tuple[str, ...]
Pair = tuple[str, str]

ADMIN_LINE: Line = ("p", "role:admin", "*", "*", "all")
_SAFE_VALUE = re.compile(r"^[A-Za-z0-9_:*.\-]{1,100}$")
_ROLE_CODE = re.compile(r"^[a-z][a-z0-9_]{1,31}$")


@dataclass
class PolicyDiff:
    added: list[Line] = field(default_factory=list)
    removed: list[Line] = field(default_factory=list)
    scopes: dict[str, tuple[str, str]] = field(default_factory=dict)  # role → (old, new)
    active: dict[str, tuple[bool, bool]] = field(default_factory=dict)  # role → (was, is) enabled
    new_roles: dict[str, str] = field(default_factory=dict)  # role created → its data scope

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.scopes or self.active or self.new_roles)


def format_line(line: Line) -> str:
    return ", ".join(line)


def current_lines(session: Session) -> list[Line]:
    defaults = _role_scopes(session)
    rows = session.execute(select(CasbinRule).order_by(CasbinRule.ptype.desc(), CasbinRule.id)).scalars()
    lines: list[Line] = []
    for r in rows:
        if r.ptype == "p":
            scope = r.v3 if r.v3 in SCOPE_ORDER else defaults.get(r.v0.removeprefix("role:"), "self")
            lines.append(("p", r.v0, r.v1, r.v2, scope))
        else:
            lines.append(tuple(r.line()))
    return lines


def policy_csv(session: Session) -> str:
    """The whole policy as Casbin CSV (the export, and the advanced editor's starting text)."""
    out = ["# 客户信息管理系统权限策略(Casbin CSV)",
           "# p, role:<角色>, <资源>, <操作>, <数据范围:all 全部 / dept_tree 本部门及下级 / dept 本部门 / self 仅本人>",
           "# g, u:<用户ID>, role:<角色>"]
    out.extend(format_line(line) for line in current_lines(session))
    return "\n".join(out) + "\n"


def parse_csv(text: str) -> list[tuple[int, list[str]]]:
    """Lines of a policy CSV with their line numbers (comments and blank lines skipped)."""
    if len(text) > 1_000_000:
        raise UserError("策略文本过大。")
    lines: list[tuple[int, list[str]]] = []
    for number, raw in enumerate(text.lstrip("\ufeff").splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if '"' in raw or "'" in raw:
            raise UserError(f"第 {number} 行:策略值不能包含引号。")
        parts = next(csv.reader(io.StringIO(raw), skipinitialspace=False))
        lines.append((number, [p.strip() if p.strip() == p.strip(" ") else p for p in parts]))
    return lines


def validate_lines(session: Session, parsed: list[tuple[int, list[str]]]) -> list[Line]:
    """Check every value against what exists; returns the lines in canonical form (duplicates dropped)."""
    defaults = _role_scopes(session)
    roles = set(defaults)
    user_ids = set(session.execute(select(SysUser.id)).scalars())
    out: list[Line] = []
    seen: set[Line] = set()
    scope_of: dict[tuple[str, ...], str] = {}
    for number, parts in parsed:
        where = f"第 {number} 行"
        parts = [p.strip(" ") for p in parts]  # a space after the comma is CSV layout, not data
        for value in parts:
            _check_value(value, where)
        if not parts or parts[0] not in ("p", "g"):
            raise UserError(f"{where}:类型只能是 p(权限)或 g(用户角色)。")
        if parts[0] == "p":
            if len(parts) not in (4, 5):
                raise UserError(f"{where}:p 行须为“p, role:角色, 资源, 操作, 数据范围”五项(数据范围可省略)。")
            _, sub, res, act = parts[:4]
            _check_role(sub, roles, where)
            if res != "*" and res not in RESOURCES:
                raise UserError(f"{where}:未知的资源“{res}”。")
            if act != "*" and act not in ACTIONS:
                raise UserError(f"{where}:未知的操作“{act}”。")
            if res != "*" and act != "*" and not applicable(res, act):
                raise UserError(f"{where}:操作“{ACTIONS[act]}”不适用于资源“{RESOURCES[res]}”。")
            scope = parts[4] if len(parts) == 5 else defaults.get(sub.removeprefix("role:"), "self")
            if scope not in SCOPE_ORDER:
                raise UserError(f"{where}:数据范围只能是 all、dept_tree、dept 或 self。")
            if scope_of.setdefault((sub, res, act), scope) != scope:
                raise UserError(f"{where}:同一角色的同一权限只能有一个数据范围({sub}, {res}, {act})。")
            line: Line = ("p", sub, res, act, scope)
        else:
            if len(parts) != 3:
                raise UserError(f"{where}:g 行须为“g, u:用户ID, role:角色”三项。")
            _, user, role = parts
            if not re.fullmatch(r"u:\d{1,10}", user) or int(user[2:]) not in user_ids:
                raise UserError(f"{where}:用户“{user}”不存在(格式为 u:用户ID)。")
            _check_role(role, roles, where)
            line = ("g", user, role)
        if line not in seen:
            seen.add(line)
            out.append(line)
    return out


def _check_value(value: str, where: str) -> None:
    if value != value.strip() or not value:
        raise UserError(f"{where}:策略值不能为空,也不能以空格开头或结尾。")
    if any(ch in value for ch in ",\"'\n\r\t"):
        raise UserError(f"{where}:策略值不能包含逗号、引号或换行。")
    if not _SAFE_VALUE.fullmatch(value):
        raise UserError(f"{where}:策略值“{value[:40]}”含有不允许的字符。")


def _check_role(subject: str, roles: set[str], where: str) -> None:
    if not subject.startswith("role:") or subject.removeprefix("role:") not in roles:
        raise UserError(f"{where}:角色“{subject}”不存在(格式为 role:角色编码)。")


def expand(res: str, act: str) -> set[tuple[str, str]]:
    resources = RESOURCES if res == "*" else [res]
    actions = ACTIONS if act == "*" else [act]
    return {(r, a) for r in resources for a in actions}


def role_permissions(lines: list[Line], role: str) -> set[tuple[str, str]]:
    return set(role_grants(lines, role))


def role_grants(lines: list[Line], role: str) -> dict[Pair, str]:
    """Each permission the role's lines grant, with the widest scope any of them gives it."""
    grants: dict[Pair, str] = {}
    for line in lines:
        if line[0] == "p" and line[1] == f"role:{role}":
            for pair in expand(line[2], line[3]):
                grants[pair] = _wider(grants.get(pair), _line_scope(line))
    return grants


def _line_scope(line: Line) -> str:
    return line[4] if len(line) > 4 and line[4] in SCOPE_ORDER else "self"


def _wider(a: str | None, b: str) -> str:
    return b if a is None or _scope_rank(b) > _scope_rank(a) else a


def diff_policy(before: list[Line], after: list[Line]) -> PolicyDiff:
    b, a = set(before), set(after)
    return PolicyDiff(added=[x for x in after if x not in b], removed=[x for x in before if x not in a])


def _role_scopes(session: Session) -> dict[str, str]:
    return {code: scope for code, scope in session.execute(select(SysRole.code, SysRole.data_scope))}


def check_change(session: Session, editor: Principal, before: list[Line], after: list[Line],
                 diff: PolicyDiff) -> None:
    """The one check of every change to roles — their permissions and the scope of each, their default
    scope, status or members — by any path (permission grid, advanced editor, role form, user form,
    role delete).

    Nobody grants more than they hold: every permission added to or taken from a role, every role a user
    is put into or taken out of, and every role whose status changes must be within the editor's own
    permissions, each with a scope no wider than the editor's own for it. And nobody removes the last
    administrator.
    """
    widest = _scope_rank(editor.scope)

    def exceeding(grants: dict[Pair, str]) -> str | None:
        for (res, act), scope in sorted(grants.items()):
            what = f"{RESOURCES.get(res, res)} / {ACTIONS.get(act, act)}"
            if (res, act) not in editor.permissions:
                return f"您自己没有的权限({what})"
            if _scope_rank(scope) > _scope_rank(editor.scope_for(res, act)):
                return f"比您自己更大的数据范围({what}:{SCOPE_LABELS.get(scope, scope)})"
        return None

    def within(role: str, lines: list[Line], what: str) -> None:
        problem = exceeding(role_grants(lines, role))
        if problem:
            raise Forbidden(f"{what}:角色“{role}”拥有{problem}。")

    # a permission line added or taken away; a member put into a role (as it is after) or taken out of
    # one (as it was before)
    for lines, verb, roles, membership in ((diff.added, "授予", after, "不能把用户加入该角色"),
                                           (diff.removed, "修改", before, "不能把用户移出该角色")):
        for line in lines:
            if line[0] == "p":
                problem = exceeding({pair: _line_scope(line) for pair in expand(line[2], line[3])})
                if problem:
                    raise Forbidden(f"不能{verb}{problem}:{format_line(line)}。")
            else:
                within(line[2].removeprefix("role:"), roles, membership)
    for role, (_old, new) in diff.scopes.items():
        if _scope_rank(new) > widest:
            raise Forbidden(f"不能把角色“{role}”的默认数据范围设为比您自己更大的范围。")
        within(role, after, "不能修改该角色的数据范围")
    for role in diff.active:
        within(role, after, "不能启用或停用该角色")
    for role, scope in diff.new_roles.items():
        if _scope_rank(scope) > widest:
            raise Forbidden(f"不能新建数据范围比您自己更大的角色“{role}”。")
    _keep_an_administrator(session, after, diff)


def _scope_rank(scope: str) -> int:
    return SCOPE_ORDER.index(scope) if scope in SCOPE_ORDER else 0


def _keep_an_administrator(session: Session, after: list[Line], diff: PolicyDiff) -> None:
    if ADMIN_LINE not in after:
        raise UserError("不能删除“p, role:admin, *, *”:系统管理员角色必须保留全部权限。")
    if diff.scopes.get("admin", ("all", "all"))[1] != "all" or not diff.active.get("admin", (True, True))[1]:
        raise UserError("系统管理员角色必须启用,且数据范围为全部数据。")
    active = set(session.execute(select(SysUser.id).where(SysUser.is_active.is_(True))).scalars())
    admins = [line for line in after if line[0] == "g" and line[2] == "role:admin"
              and int(line[1][2:]) in active]
    if not admins:
        raise UserError("不能移除最后一位系统管理员:至少须保留一个启用的用户拥有 admin 角色。")


def check_role_form(session: Session, editor: Principal, role: SysRole, *, is_created: bool,
                    scope_before: str | None, active_before: bool | None) -> None:
    """The role form (create or edit a role): its scope and status go through ``check_change``."""
    diff = PolicyDiff()
    if is_created:
        diff.new_roles[role.code] = role.data_scope
        if not role.is_active:
            return
    else:
        if scope_before is not None and scope_before != role.data_scope:
            diff.scopes[role.code] = (scope_before, role.data_scope)
        if active_before is not None and active_before != role.is_active:
            diff.active[role.code] = (active_before, role.is_active)
    if diff.empty:
        return
    lines = current_lines(session)
    check_change(session, editor, lines, lines, diff)


def check_role_delete(session: Session, editor: Principal, role: SysRole) -> list[Line]:
    """Deleting a role drops its permission lines: the same check as removing them in the editor."""
    before = current_lines(session)
    subject = f"role:{role.code}"
    after = [line for line in before if not (line[0] == "p" and line[1] == subject)]
    check_change(session, editor, before, after, diff_policy(before, after))
    return [line for line in before if line not in after]


def apply_policy(session: Session, editor: Principal, after: list[Line], *,
                 scopes: dict[str, str] | None = None, source: str = "editor") -> PolicyDiff:
    """Make ``after`` the whole policy (and set role data scopes). The caller commits."""
    before = current_lines(session)
    defaults = _role_scopes(session)
    after = [(*line, defaults.get(line[1].removeprefix("role:"), "self")) if line[0] == "p" and len(line) == 4
             else line for line in after]  # a permission given without a scope has its role's default
    diff = diff_policy(before, after)
    role_rows = {r.code: r for r in session.execute(select(SysRole).with_for_update()).scalars()}
    for code, scope in (scopes or {}).items():
        if code not in role_rows:
            raise UserError(f"角色“{code}”不存在。")
        if scope not in DATA_SCOPES:
            raise UserError(f"数据范围“{scope}”无效。")
        if role_rows[code].data_scope != scope:
            diff.scopes[code] = (role_rows[code].data_scope, scope)
    if diff.empty:
        return diff
    check_change(session, editor, before, after, diff)
    session.info[INFO_SILENT] = True  # one summary row below instead of a row per policy line
    try:
        rows = session.execute(select(CasbinRule)).scalars().all()
        defaults = _role_scopes(session)
        by_line = {_as_line(r, defaults): r for r in rows}
        for line in diff.removed:  # one row at a time (the adapter's plural remove is unsafe)
            session.delete(by_line[line])
        session.flush()
        for line in diff.added:
            values = [*line[1:], "", "", "", "", "", ""][:6]
            session.add(CasbinRule(ptype=line[0], v0=values[0], v1=values[1], v2=values[2], v3=values[3]))
        for code, (_old, new) in diff.scopes.items():
            role_rows[code].data_scope = new
        session.flush()
    finally:
        session.info.pop(INFO_SILENT, None)
    _bump_epochs(session, diff)
    bump_policy_version(session.connection())
    audit.record(
        session, "policy_change", resource="policy",
        changes={
            "added": [format_line(x) for x in diff.added],
            "removed": [format_line(x) for x in diff.removed],
            "data_scope": {k: list(v) for k, v in diff.scopes.items()},
            "before": [format_line(x) for x in before],
            "after": [format_line(x) for x in after],
        },
        detail=f"{source}:新增 {len(diff.added)} 条,删除 {len(diff.removed)} 条,数据范围变更 {len(diff.scopes)} 个",
    )
    return diff


def _as_line(rule: CasbinRule, defaults: dict[str, str]) -> Line:
    if rule.ptype != "p":
        return tuple(rule.line())
    scope = rule.v3 if rule.v3 in SCOPE_ORDER else defaults.get(rule.v0.removeprefix("role:"), "self")
    return ("p", rule.v0, rule.v1, rule.v2, scope)


def _bump_epochs(session: Session, diff: PolicyDiff) -> None:
    """Users whose role membership changed must sign in again (their next request is refused)."""
    ids = {int(line[1][2:]) for line in [*diff.added, *diff.removed] if line[0] == "g"}
    for user in session.execute(select(SysUser).where(SysUser.id.in_(ids))).scalars() if ids else []:
        user.session_epoch = (user.session_epoch or 0) + 1
    session.flush()


def grid_lines(before: list[Line], grid: set[tuple[str, str, str]], roles: list[str], *,
               defaults: dict[str, str], new_defaults: dict[str, str],
               exceptions: dict[tuple[str, str, str], str]) -> list[Line]:
    """The policy after a grid save: p lines of the grid's roles replaced, everything else kept.

    Each ticked permission gets its exception's scope if one is given, otherwise its role's default
    scope (after the save); an exception grants its permission too. A role that has ``*`` lines (admin)
    is left as it is: the grid shows them but cannot express them.
    """
    edited = {r for r in roles if not any(
        line[0] == "p" and line[1] == f"role:{r}" and "*" in line[2:4] for line in before)}
    kept = [line for line in before if not (line[0] == "p" and line[1].removeprefix("role:") in edited)]
    wanted = {key for key in grid | set(exceptions) if key[0] in edited}
    added = [("p", f"role:{r}", res, act, exceptions.get((r, res, act)) or new_defaults.get(r, defaults.get(r, "self")))
             for (r, res, act) in sorted(wanted)]
    return kept + added


def retarget_default_scope(session: Session, editor: Principal, role: str, old: str, new: str) -> PolicyDiff:
    """A role's default scope changes from ``old`` to ``new``: its permissions that had the old default
    follow (the exceptions stay), through ``apply_policy`` and its checks."""
    before = current_lines(session)
    after = [("p", line[1], line[2], line[3], new)
             if line[0] == "p" and line[1] == f"role:{role}" and "*" not in line[2:4] and line[4] == old else line
             for line in before]
    return apply_policy(session, editor, after, scopes={role: new}, source="角色表单")


def scope_exceptions(lines: list[Line], defaults: dict[str, str]) -> list[tuple[str, str, str, str]]:
    """Permissions whose scope differs from their role's default: (role, resource, action, scope)."""
    return sorted(
        (line[1].removeprefix("role:"), line[2], line[3], line[4]) for line in lines
        if line[0] == "p" and "*" not in line[2:4] and line[4] != defaults.get(line[1].removeprefix("role:"))
    )


def set_user_roles(session: Session, editor: Principal, user_id: int, roles: list[str]) -> PolicyDiff:
    before = current_lines(session)
    subject = f"u:{user_id}"
    after = [line for line in before if not (line[0] == "g" and line[1] == subject)]
    after.extend(("g", subject, f"role:{r}") for r in roles)
    validate_lines(session, [(0, list(line)) for line in after if line[0] == "g" and line[1] == subject])
    return apply_policy(session, editor, after, source="用户角色")


def valid_role_code(code: str) -> bool:
    return bool(_ROLE_CODE.fullmatch(code))
