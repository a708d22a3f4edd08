"""The signed-in user as every check sees it: identity, roles, permission set and data scope."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, select

from crm_admin.accounts.models import SysDept, SysUser
from crm_admin.core.permissions import Grants, gate


@dataclass(frozen=True)
class Principal:
    id: int
    username: str
    real_name: str
    dept_id: int | None
    roles: frozenset[str]
    scope: str  # all / dept_tree / dept / self
    permissions: frozenset[tuple[str, str]]
    # Users whose customers this principal may see; None means everyone's (scope "all").
    visible_user_ids: frozenset[int] | None

    @property
    def display_name(self) -> str:
        return self.real_name or self.username

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles

    def can(self, resource: str, action: str) -> bool:
        return (resource, action) in self.permissions


def dept_subtree(conn: Connection, root_id: int) -> set[int]:
    rows = conn.execute(select(SysDept.id, SysDept.parent_id)).all()
    children: dict[int | None, list[int]] = {}
    for dept_id, parent_id in rows:
        children.setdefault(parent_id, []).append(dept_id)
    found = {root_id}
    stack = [root_id]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def visible_users(conn: Connection, user_id: int, dept_id: int | None, scope: str) -> frozenset[int] | None:
    if scope == "all":
        return None
    if scope == "self" or dept_id is None:
        return frozenset({user_id})
    depts = dept_subtree(conn, dept_id) if scope == "dept_tree" else {dept_id}
    ids = conn.execute(select(SysUser.id).where(SysUser.dept_id.in_(depts))).scalars().all()
    return frozenset({user_id, *ids})


def load_principal(conn: Connection, user: SysUser) -> Principal:
    grants: Grants = gate.grants(conn, user.id)
    return Principal(
        id=user.id,
        username=user.username,
        real_name=user.real_name,
        dept_id=user.dept_id,
        roles=grants.roles,
        scope=grants.scope,
        permissions=grants.permissions,
        visible_user_ids=visible_users(conn, user.id, user.dept_id, grants.scope),
    )
