"""The permission gate: Casbin decides (user, resource, action), and each policy line carries the data
scope of that permission (``p, role:sales_lead, customer, view, dept_tree`` next to
``p, role:sales_lead, customer, edit, self``: see the team's customers, change only one's own). A line
without a scope has its role's default scope (``sys_role.data_scope``).

Casbin's ``enforce`` is not safe to call from several threads on CPython 3.11 and is slower than a
set look-up, so each user's whole permission set is computed once per policy version, under a lock,
and every menu, button and route check is answered from that set.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import casbin
from casbin.model import Model
from casbin.persist.adapter import Adapter
from sqlalchemy import Connection, Select, select

from crm_admin.core.i18n import Labels
from crm_admin.core.models import CasbinRule, SysMeta, SysRole, bump_counter

ROOT = Path(__file__).resolve().parents[2]
MODEL_PATH = ROOT / "rbac_model.conf"

POLICY_VERSION_KEY = "policy_version"

ACTIONS = Labels({
    "list": "列表",
    "view": "查看",
    "create": "新增",
    "edit": "编辑",
    "delete": "删除",
    "export": "导出",
    "import": "导入",
    "transfer": "转移",
    "assign": "分配",
    "merge": "合并",
    "restore": "恢复",
    "purge": "彻底删除",
    "claim": "领取",
    "return": "退回",
})
# Actions that only make sense on some resources: one (resource, action) per business action (moving
# customers is ``customer`` / ``transfer``, not ``transfer`` / ``transfer``). The grid offers them only
# there, and the editor refuses them elsewhere.
ACTION_RESOURCES: dict[str, frozenset[str]] = {
    "merge": frozenset({"customer"}),
    "transfer": frozenset({"customer"}),
    "assign": frozenset({"customer", "pool"}),
    "claim": frozenset({"pool"}),
    "return": frozenset({"pool"}),
    "import": frozenset({"customer", "linkman", "product"}),
    "restore": frozenset({"recycle_bin"}),
    "purge": frozenset({"recycle_bin"}),
}
# Resources that are one permission rather than a screen: only these actions apply to them.
RESOURCE_ACTIONS: dict[str, frozenset[str]] = {
    # see personal data (phones, e-mail, addresses) in full; without it they are shown masked (core/masking.py)
    "sensitive_data": frozenset({"view"}),
    # requests of a data subject about a contact: export what is held, erase (anonymise) it
    "personal_data": frozenset({"export", "delete"}),
}


def applicable(resource: str, action: str) -> bool:
    only = ACTION_RESOURCES.get(action)
    if only is not None and resource not in only:
        return False
    actions = RESOURCE_ACTIONS.get(resource)
    return actions is None or action in actions

# Every resource a permission can name, with its label in the policy editor.
RESOURCES = Labels({
    "dashboard": "首页",
    "customer": "客户",
    "linkman": "联系人",
    "follow_up": "联系记录",
    "opportunity": "销售机会",
    "pipeline": "销售漏斗",
    "customer_care": "客户关怀",
    "care_plan": "关怀计划",
    "transfer": "客户转移",
    "pool": "公海",
    "reclaim_rule": "回收规则",
    "product": "产品",
    "order": "订单",
    "churn_rule": "流失预警规则",
    "churn_alert": "流失预警",
    "churn_analysis": "流失分析",
    "user": "用户",
    "dept": "部门",
    "role": "角色",
    "policy": "权限策略",
    "dict": "数据字典",
    "audit": "审计日志",
    "job": "定时任务",
    "sensitive_data": "查看敏感信息",
    "personal_data": "个人信息主体请求",
    "recycle_bin": "回收站",
})

SCOPE_ORDER = ("self", "dept", "dept_tree", "all")
SCOPE_LABELS = Labels({"all": "全部数据", "dept_tree": "本部门及下级", "dept": "本部门", "self": "仅本人"})


def user_subject(user_id: int) -> str:
    return f"u:{user_id}"


def role_subject(code: str) -> str:
    return f"role:{code}"


def _expand(resource: str, action: str) -> list[tuple[str, str]]:
    resources = list(RESOURCES) if resource == "*" else [resource] if resource in RESOURCES else []
    actions = list(ACTIONS) if action == "*" else [action] if action in ACTIONS else []
    return [(r, a) for r in resources for a in actions]


def widest_scope(scopes: list[str] | set[str]) -> str:
    best = "self"
    for s in scopes:
        if s in SCOPE_ORDER and SCOPE_ORDER.index(s) > SCOPE_ORDER.index(best):
            best = s
    return best


class _RowsAdapter(Adapter):  # type: ignore[misc]
    """Feeds Casbin the rows read from ``casbin_rule`` (read-only: the editor writes through the ORM)."""

    def __init__(self, lines: list[list[str]]) -> None:
        self.lines = lines

    def load_policy(self, model: Model) -> None:
        for line in self.lines:
            sec = "g" if line[0].startswith("g") else "p"
            if sec in model.model and line[0] in model.model[sec]:
                model.model[sec][line[0]].policy.append(line[1:])

    def save_policy(self, model: Model) -> bool:
        raise NotImplementedError("policies are saved through the policy editor")


@dataclass(frozen=True)
class Grants:
    roles: frozenset[str]
    scope: str  # the widest scope of any permission (what "sees everyone" asks)
    permissions: frozenset[tuple[str, str]] = field(default_factory=frozenset)
    # (resource, action) → the widest scope any of the user's roles grants it with
    scopes: Mapping[tuple[str, str], str] = field(default_factory=dict)
    # one of the user's roles requires signing in with a second factor (``sys_role.require_totp``)
    second_factor_required: bool = False


class Gate:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._version: int | None = None
        self._enforcer: casbin.Enforcer | None = None
        self._role_scopes: dict[str, str] = {}
        self._second_factor_roles: frozenset[str] = frozenset()
        self._cache: dict[int, Grants] = {}

    @staticmethod
    def current_version(conn: Connection) -> int:
        value = conn.execute(Gate.version_query()).scalar()
        return int(value or 0)

    @staticmethod
    def version_query() -> Select[int]:
        return select(SysMeta.value).where(SysMeta.key == POLICY_VERSION_KEY)

    def _reload(self, conn: Connection, version: int) -> None:
        roles = conn.execute(select(SysRole.code, SysRole.data_scope, SysRole.is_active,
                                    SysRole.require_totp)).all()
        active = {code for code, _scope, is_active, _totp in roles if is_active}
        self._role_scopes = {code: scope for code, scope, is_active, _totp in roles if is_active}
        self._second_factor_roles = frozenset(code for code, _scope, is_active, totp in roles
                                              if is_active and totp)
        lines: list[list[str]] = []
        rows = conn.execute(select(CasbinRule.ptype, CasbinRule.v0, CasbinRule.v1, CasbinRule.v2, CasbinRule.v3))
        for ptype, v0, v1, v2, v3 in rows:
            if ptype == "g" and v1.removeprefix("role:") not in active:
                continue
            if ptype == "p" and v0.startswith("role:") and v0.removeprefix("role:") not in active:
                continue
            if ptype == "p":
                scope = v3 if v3 in SCOPE_ORDER else self._role_scopes.get(v0.removeprefix("role:"), "self")
                lines.append([ptype, v0, v1, v2, scope])
            else:
                lines.append([ptype, v0, v1])
        model = casbin.Enforcer.new_model(str(MODEL_PATH))
        enforcer = casbin.Enforcer(model, _RowsAdapter(lines))
        self._enforcer = enforcer
        self._cache = {}
        self._version = version

    def grants(self, conn: Connection, user_id: int, *, version: int | None = None) -> Grants:
        """``version``: the policy version the caller has just read in the same transaction (saves a
        statement per request); read here when not given."""
        if version is None:
            version = self.current_version(conn)
        with self._lock:
            if version != self._version or self._enforcer is None:
                self._reload(conn, version)
            cached = self._cache.get(user_id)
            if cached is not None:
                return cached
            enforcer = self._enforcer
            assert enforcer is not None
            subject = user_subject(user_id)
            roles = frozenset(
                r.removeprefix("role:")
                for r in enforcer.get_implicit_roles_for_user(subject)
                if r.startswith("role:")
            )
            # The rules Casbin applies to the subject (through its roles), expanded over the known
            # resources and actions: the same answers as ``enforce`` for each pair (tested), without
            # parsing the matcher 189 times (~0.1 s per user, under the lock, after each policy change).
            scopes: dict[tuple[str, str], str] = {}
            for rule in enforcer.get_implicit_permissions_for_user(subject):
                if len(rule) < 3:
                    continue
                line_scope = rule[3] if len(rule) > 3 and rule[3] in SCOPE_ORDER else "self"
                for pair in _expand(rule[1], rule[2]):
                    scopes[pair] = widest_scope({scopes.get(pair, "self"), line_scope})
            perms = frozenset(scopes)
            scope = widest_scope(set(scopes.values())) if scopes else widest_scope(
                {self._role_scopes.get(r, "self") for r in roles})
            grants = Grants(roles=roles, scope=scope, permissions=perms, scopes=scopes,
                            second_factor_required=bool(roles & self._second_factor_roles))
            self._cache[user_id] = grants
            return grants

    def forget(self) -> None:
        with self._lock:
            self._version = None
            self._cache = {}


gate = Gate()


def bump_policy_version(conn: Connection) -> None:
    """Make every process reload the policy on its next request (call inside the writing transaction)."""
    bump_counter(conn, POLICY_VERSION_KEY)
