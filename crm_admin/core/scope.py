"""Data scope as SQL: the one place that turns a principal into a WHERE clause for a model.

Every read or write path (admin views, custom pages, exports, look-ups, jobs acting for a user) builds
its statement through ``scoped`` so that rows outside the user's scope never come back. A scope belongs
to a permission — (resource, action) — not to the user as a whole: a sales lead may *view* the team's
customers and *edit* only their own (``p, role:sales_lead, customer, edit, self``), so each path says
which action it performs (``"list"`` for a list page, ``"edit"`` for a save, ``"delete"``…; reading a row
is ``"view"``). Without a resource, the widest scope the principal holds applies.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, false, select, true

from crm_admin.core.errors import UserError
from crm_admin.core.models import CasbinRule, SysDept, SysRole, SysUser
from crm_admin.core.principal import Principal

VIEW = "view"


def resource_of(model: type) -> str:
    return str(getattr(model, "__resource__", "") or getattr(model, "__tablename__", ""))


def _users(principal: Principal, resource: str | None, action: str) -> frozenset[int] | None:
    if resource is None:
        return principal.visible_user_ids
    return principal.users_for(resource, action)


def _owned_by(column: Any, ids: frozenset[int] | None) -> ColumnElement[bool]:
    if ids is None:
        return true()
    if not ids:
        return false()
    if len(ids) == 1:
        return column == next(iter(ids))
    return column.in_(sorted(ids))


def owner_clause(column: Any, principal: Principal, *, resource: str | None = None,
                 action: str = VIEW) -> ColumnElement[bool]:
    """``column`` (a user id: a manager, an assignee) names someone whose rows the permission reaches."""
    return _owned_by(column, _users(principal, resource, action))


# How rows of each kind of scope are reached from the users a permission covers. "owner" rows name their
# manager; the other kinds are registered by the module that owns the table they go through
# (``customers.models`` registers "customer": rows with a ``customer_id``; ``orders.models`` "order"),
# so this module depends on no business module.
UserIds = frozenset[int] | None
KindClause = Callable[[type, UserIds], ColumnElement[bool]]
_KINDS: dict[str, KindClause] = {"owner": lambda model, ids: _owned_by(model.manager_id, ids)}  # type: ignore[attr-defined]


def register_scope_kind(kind: str, clause: KindClause) -> None:
    """``clause(model, user_ids)``: the condition a row of ``model`` meets when those users reach it."""
    _KINDS[kind] = clause


def owned_by(column: Any, ids: UserIds) -> ColumnElement[bool]:
    """``column`` names one of ``ids`` (None: anyone) — for the modules that register a kind."""
    return _owned_by(column, ids)


def kind_clause(kind: str, model: type, ids: UserIds) -> ColumnElement[bool]:
    """The condition of a registered kind (a kind may build on another: orders go through customers)."""
    try:
        clause = _KINDS[kind]
    except KeyError:
        raise ValueError(f"unknown scope kind {kind!r} on {model.__name__}: its module registers it") from None
    return clause(model, ids)


def scope_clause(model: type, principal: Principal, action: str = VIEW, *,
                 resource: str | None = None) -> ColumnElement[bool] | None:
    """The condition a row of ``model`` must meet for ``principal`` to perform ``action`` on it.

    ``resource`` defaults to the model's own: a contact is reached through its customer, with the scope
    of the *contact* permission.
    """
    kind = getattr(model, "__scope__", "")
    if not kind:
        return None
    ids = _users(principal, resource or resource_of(model), action)
    if ids is None:
        return None
    return kind_clause(kind, model, ids)


def scoped[S: Select[*tuple[Any, ...]]](stmt: S, model: type, principal: Principal, action: str = VIEW, *,
                                         resource: str | None = None) -> S:
    clause = scope_clause(model, principal, action, resource=resource)
    return stmt if clause is None else stmt.where(clause)


def owner_partition(model: type, principal: Principal, action: str = VIEW, *,
                    resource: str | None = None) -> tuple[Any, frozenset[int]] | None:
    """How the rows of ``model`` within the scope divide among the users the scope covers:
    ``(column, users)`` when each such row names one of ``users`` in ``column``; None for an unlimited
    scope or a model whose rows name nobody. An "owner" row names its manager (``manager_id``, the
    scope itself); a row of another kind may carry a copy of whom its scope goes through
    (``__scope_owner__``: a follow-up carries its customer's manager). A copy serves to find and count
    rows; the rows shown are still read through ``scoped``."""
    kind = getattr(model, "__scope__", "")
    column_name = "manager_id" if kind == "owner" else getattr(model, "__scope_owner__", "")
    if not kind or not column_name:
        return None
    ids = _users(principal, resource or resource_of(model), action)
    if ids is None:
        return None
    return getattr(model, column_name), ids


def owner_scoped[S: Select[*tuple[Any, ...]]](stmt: S, model: type, principal: Principal, action: str = VIEW, *,
                                               resource: str | None = None) -> S:
    """``stmt`` limited by the owner each row names (``owner_partition``): the same rows as ``scoped``
    where the copy a row carries is right (one index range per user), ``scoped`` where rows name nobody."""
    partition = owner_partition(model, principal, action, resource=resource)
    if partition is None:
        return scoped(stmt, model, principal, action, resource=resource)
    column, ids = partition
    return stmt.where(_owned_by(column, ids))


def in_scope(conn_or_session: Any, model: type, pk: Any, principal: Principal, action: str = VIEW, *,
             resource: str | None = None) -> bool:
    """Whether the row ``pk`` of ``model`` exists and ``principal`` may perform ``action`` on it (for
    submitted foreign keys, and the row a custom page names)."""
    if pk in (None, ""):
        return True
    try:
        pk = int(pk)
    except (TypeError, ValueError):
        return False
    stmt = scoped(select(model.id).where(model.id == pk), model, principal, action,  # type: ignore[attr-defined]
                  resource=resource)
    return conn_or_session.execute(stmt).first() is not None


# ----- people in scope ------------------------------------------------------------------------
# What a principal's scope says about other users. Code outside this module asks these questions
# instead of reading the principal's internals, so the rule lives here alone.


def sees_everyone(principal: Principal, resource: str | None = None, action: str = VIEW) -> bool:
    """An unlimited data scope ("all") — of one permission, or of the widest one held."""
    return _users(principal, resource, action) is None


def sees_user(principal: Principal, user_id: int | None, resource: str | None = None,
              action: str = VIEW) -> bool:
    """Whether rows owned by ``user_id`` are within the scope (of one permission, or the widest)."""
    ids = _users(principal, resource, action)
    return ids is None or (user_id is not None and user_id in ids)


def narrower_than_widest(principal: Principal, resource: str, action: str = VIEW) -> bool:
    """Whether some owner the principal reaches through their widest scope is outside the scope of the
    permission (resource, action): a lead who sees the team's customers but holds a permission for
    their own only. False when the permission reaches at least as far as any other."""
    ids = _users(principal, resource, action)
    if ids is None:
        return False
    widest = principal.visible_user_ids
    return widest is None or not widest <= ids


def sees_several_users(principal: Principal, resource: str | None = None, action: str = VIEW) -> bool:
    """Whether the scope covers other people than the principal (a "by manager" picker makes sense)."""
    ids = _users(principal, resource, action)
    return ids is None or len(ids) > 1


@dataclass(frozen=True, slots=True)
class UserChoice:
    """A user as a picker shows them: three columns instead of a whole account (a picker lists every
    user in scope on every page view; loading them as accounts cost a list page a third of its CPU)."""

    id: int
    username: str
    real_name: str | None

    def __str__(self) -> str:  # as SysUser's
        return f"{self.real_name}({self.username})" if self.real_name else self.username


def users_in_scope(session: Any, principal: Principal, *, active_only: bool = True, resource: str | None = None,
                   action: str = VIEW) -> list[UserChoice]:
    """The users whose rows the principal sees, by name: the choices of a "by manager" filter."""

    stmt = select(SysUser.id, SysUser.username, SysUser.real_name).where(
        owner_clause(SysUser.id, principal, resource=resource, action=action))
    if active_only:
        stmt = stmt.where(SysUser.is_active.is_(True))
    return [UserChoice(*row) for row in session.execute(stmt.order_by(SysUser.real_name, SysUser.username))]


def depts_in_scope(session: Any, principal: Principal, *, resource: str | None = None,
                   action: str = VIEW) -> list[tuple[int, str]]:
    """Departments of the users in scope (a "by department" filter), or every department for "all"."""

    stmt = select(SysDept.id, SysDept.name).order_by(SysDept.sort, SysDept.name)
    if not sees_everyone(principal, resource, action):
        stmt = stmt.where(SysDept.id.in_(select(SysUser.dept_id).where(
            owner_clause(SysUser.id, principal, resource=resource, action=action))))
    return [(row[0], row[1]) for row in session.execute(stmt)]


# ----- whom work may be given to ---------------------------------------------------------------
# One rule for every picker and every posted user id that makes someone responsible for rows (the
# customer form, import, care tasks, opportunities, merge, transfers): the user exists, is active,
# holds a role that may work customers (``customer`` / ``edit``), and, when assigning, is within the
# assigner's data scope. A transfer hands customers *away* (requirements: the current manager picks
# the new manager), so for it the new manager may be anyone who may own customers.

ASSIGN = "assign"
TRANSFER = "transfer"


def _owner_roles(session: Any) -> set[str]:
    active = set(session.execute(select(SysRole.code).where(SysRole.is_active.is_(True))).scalars())
    granting = {
        str(v0).removeprefix("role:")
        for v0 in session.execute(
            select(CasbinRule.v0).where(CasbinRule.ptype == "p", CasbinRule.v1.in_(("customer", "*")),
                                        CasbinRule.v2.in_(("edit", "*")))
        ).scalars()
    }
    return active & granting


def _assignable_stmt(session: Any, principal: Principal, purpose: str) -> Select[Any]:
    members = select(CasbinRule.v0).where(
        CasbinRule.ptype == "g", CasbinRule.v1.in_(sorted(f"role:{r}" for r in _owner_roles(session))))
    subjects = {str(v) for v in session.execute(members).scalars()}
    ids = sorted(int(s[2:]) for s in subjects if s.startswith("u:") and s[2:].isdigit())
    stmt = select(SysUser).where(SysUser.is_active.is_(True), SysUser.id.in_(ids) if ids else false())
    if purpose != TRANSFER:
        stmt = stmt.where(owner_clause(SysUser.id, principal, resource="customer", action="assign"))
    return stmt


def assignable_users(session: Any, principal: Principal, *, purpose: str = ASSIGN) -> list[Any]:
    """Users ``principal`` may make responsible for rows (``purpose``: ASSIGN or TRANSFER), by name."""

    stmt = _assignable_stmt(session, principal, purpose).order_by(SysUser.real_name, SysUser.username)
    return list(session.execute(stmt).scalars())


def assignable_ids(session: Any, principal: Principal, *, purpose: str = ASSIGN) -> list[int]:
    stmt = _assignable_stmt(session, principal, purpose).with_only_columns(SysUser.id)
    return [int(i) for i in session.execute(stmt).scalars()]


def check_assignee(session: Any, principal: Principal, user_id: Any, *, purpose: str = ASSIGN,
                   field: str | None = None, label: str = "客户经理") -> Any:
    """The user a posted id names, if ``principal`` may give them work; a clear UserError otherwise."""

    try:
        wanted = int(str(user_id).strip())
    except (TypeError, ValueError):
        raise UserError(f"所选的{label}无效,请重新选择。", field=field) from None
    user = session.get(SysUser, wanted) if 0 < wanted < 2**31 else None
    if user is None:
        raise UserError(f"所选的{label}不存在(编号 {wanted}),请重新选择。", field=field)
    if purpose != TRANSFER and not (user.id == principal.id or sees_user(principal, user.id, "customer", "assign")):
        raise UserError(f"{label}“{user}”不在您的数据范围内,不能把工作分配给他/她。", field=field)
    if not user.is_active:
        raise UserError(f"{label}“{user}”已停用,请选择其他人。", field=field)
    eligible = session.execute(
        _assignable_stmt(session, principal, purpose).where(SysUser.id == user.id)
    ).first()
    if eligible is None:
        raise UserError(f"{label}“{user}”的角色不能负责客户(如只读用户),请选择其他人。", field=field)
    return user
