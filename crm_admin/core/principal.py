"""The signed-in user as every check sees it: identity, roles, permission set and data scope."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy import Connection, select

from crm_admin.core.models import SysDept, SysUser
from crm_admin.core.permissions import Grants, gate


@dataclass(frozen=True)
class Principal:
    id: int
    username: str
    real_name: str
    dept_id: int | None
    roles: frozenset[str]
    scope: str  # the widest scope of any of the principal's permissions
    permissions: frozenset[tuple[str, str]]
    # Users whose rows the widest scope reaches; None means everyone's (scope "all").
    visible_user_ids: frozenset[int] | None
    # (resource, action) → its scope, and each scope the principal holds → the users it reaches
    scopes: Mapping[tuple[str, str], str] = field(default_factory=dict)
    reach: Mapping[str, frozenset[int] | None] = field(default_factory=dict)
    # a role of the user requires a second factor: without one enrolled, the user may only enrol
    second_factor_required: bool = False

    @property
    def display_name(self) -> str:
        return self.real_name or self.username

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles

    def can(self, resource: str, action: str) -> bool:
        return (resource, action) in self.permissions

    def scope_for(self, resource: str, action: str) -> str:
        """The scope of one permission ("self" for a permission the principal does not hold)."""
        if not self.scopes:  # built by hand (tests, jobs): one scope for everything
            return self.scope
        return self.scopes.get((resource, action), "self")

    def users_for(self, resource: str, action: str) -> frozenset[int] | None:
        """Users whose rows the permission (resource, action) reaches; None means everyone's."""
        scope = self.scope_for(resource, action)
        if scope in self.reach:
            return self.reach[scope]
        if scope == "all":
            return None
        if scope == self.scope:
            return self.visible_user_ids
        return frozenset({self.id})


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


def load_principal(conn: Connection, user: SysUser, *, policy_version: int | None = None) -> Principal:
    grants: Grants = gate.grants(conn, user.id, version=policy_version)
    # each distinct scope's users, once (a department's members are read from the database)
    held = set(grants.scopes.values()) | {grants.scope}
    reach = {scope: visible_users(conn, user.id, user.dept_id, scope) for scope in held}
    return Principal(
        id=user.id,
        username=user.username,
        real_name=user.real_name,
        dept_id=user.dept_id,
        roles=grants.roles,
        scope=grants.scope,
        permissions=grants.permissions,
        visible_user_ids=reach[grants.scope],
        scopes=grants.scopes,
        reach=reach,
        second_factor_required=grants.second_factor_required,
    )
