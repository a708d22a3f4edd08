"""Audit log pages: the read-only log (filters in the URL) and the analysis page.

No create, edit or delete route exists for anyone, administrators included; the rows are also
hash-chained once sealed (``crm-admin audit verify``): the list says how far the chain goes and how
many rows wait for the sealing job (a warning when they have waited too long).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

import anyio
from sqlalchemy import Select, func, select
from sqlalchemy.orm.attributes import set_committed_value
from starlette.requests import Request
from starlette.responses import Response

from crm_admin.audit.models import AuditDaily, AuditDailyUser, AuditDailyUserTotal, AuditLog
from crm_admin.core import masking
from crm_admin.core.audit import (
    ChainReport,
    chain_status,
    describe_head,
    describe_tail,
    resource_of,
)
from crm_admin.core.formatting import day_start_utc, local_date_sql, local_today
from crm_admin.core.i18n import Labels
from crm_admin.core.params import parse_date, parse_id
from crm_admin.core.permissions import RESOURCES
from crm_admin.core.principal import Principal
from crm_admin.core.routes import route
from crm_admin.core.views import CrmBaseView, ReadOnlyModelView, principal_of
from crm_admin.db import session_factory

ACTION_LABELS = Labels({
    "login": "登录", "login_failed": "登录失败", "logout": "退出", "lockout": "账号锁定",
    "create": "新增", "update": "修改", "delete": "删除", "transfer": "客户转移", "import": "导入",
    "export": "导出", "policy_change": "权限变更", "permission_denied": "越权访问",
    "password_change": "修改密码", "password_reset": "重置密码", "user_enable": "启用用户",
    "user_disable": "停用用户", "user_unlock": "解除锁定", "merge": "合并客户", "run_job": "运行定时任务",
    # personal data (core/personal.py, contacts/subject.py)
    "reveal": "查看完整个人信息", "subject_export": "导出个人信息", "erase": "匿名化个人信息",
    "restore": "从回收站恢复", "purge": "彻底删除",
    "login_pending": "密码正确待两步验证", "totp_enable": "启用两步验证", "totp_disable": "停用两步验证",
    "totp_reset": "重置两步验证", "totp_recovery_codes": "重新生成恢复码",
    "claim": "领取公海客户", "assign": "分配公海客户", "return": "退回公海", "reclaim": "自动回收",
    # personal API tokens (crm_admin/api)
    "token_create": "创建 API 令牌", "token_revoke": "撤销 API 令牌",
    "notification_retry": "重新发送通知",
})
# what an audit row may name besides the resources a permission names
_OTHER_RESOURCES = Labels({"csrf": "安全令牌校验", "import": "数据导入", "saved_query": "常用查询", "session": "登录会话",
                             "api_token": "API 令牌"})


def action_label(code: str | None) -> str:
    return ACTION_LABELS.get(code or "", code or "")


def resource_label(code: str | None) -> str:
    return RESOURCES.get(code or "") or _OTHER_RESOURCES.get(code or "", code or "")

def parse_day(text: str | None, *, end: bool = False) -> dt.datetime | None:
    """A ``YYYY-MM-DD`` in the company's time zone as the UTC instant that starts (or ends) that day."""
    day = parse_date(text)
    if day is None:
        return None
    return day_start_utc(day + dt.timedelta(days=1 if end else 0))


def apply_filters(stmt: Select[Any], params: Any) -> Select[Any]:
    """The URL's filters: user, action, resource, record, from/to dates (Shanghai days), success."""
    if user := (params.get("user") or "").strip():
        user_id = parse_id(user) if user.isdigit() else None
        stmt = stmt.where(AuditLog.user_id == user_id) if user_id is not None else stmt.where(
            AuditLog.username == user[:64])
    if action := (params.get("action") or "").strip():
        stmt = stmt.where(AuditLog.action == action)
    if resource := (params.get("resource") or "").strip():
        stmt = stmt.where(AuditLog.resource == resource)
    if record := (params.get("record") or "").strip():
        stmt = stmt.where(AuditLog.resource_id == record)
    if since := parse_day(params.get("from")):
        stmt = stmt.where(AuditLog.occurred_at >= since)
    if until := parse_day(params.get("to"), end=True):
        stmt = stmt.where(AuditLog.occurred_at < until)
    if params.get("success") in ("0", "1"):
        stmt = stmt.where(AuditLog.success.is_(params.get("success") == "1"))
    return stmt


class AuditLogAdmin(ReadOnlyModelView, model=AuditLog):
    name = "审计日志"
    icon = "fa-solid fa-clipboard-list"
    category = "系统管理"
    column_list = [AuditLog.occurred_at, AuditLog.username, AuditLog.ip, AuditLog.action,
                   AuditLog.resource, AuditLog.resource_id, AuditLog.success]
    column_labels = {
        "occurred_at": "时间", "user_id": "用户 ID", "username": "用户", "ip": "IP", "user_agent": "浏览器",
        "action": "操作", "resource": "资源", "resource_id": "记录", "changes": "变更内容", "detail": "说明",
        "success": "成功", "seal_seq": "封存序号", "prev_hash": "前序哈希", "hash": "哈希",
    }
    column_searchable_list = [AuditLog.username, AuditLog.detail]
    column_sortable_list = [AuditLog.occurred_at, AuditLog.username, AuditLog.action]
    column_default_sort = [(AuditLog.id, True)]
    column_formatters = {"action": lambda m, a: action_label(m.action),
                         "resource": lambda m, a: resource_label(m.resource)}
    # before/after values and the summary may hold phone numbers, e-mail and ID numbers, addresses:
    # masked for whoever does not see every customer's personal data (core/masking.py)
    column_formatters_detail = {**column_formatters,
                                "changes": lambda m, a, request: _as_seen(request, m.changes),
                                "detail": lambda m, a, request: _as_seen(request, m.detail)}

    list_template = "audit/list.html"
    FILTERS = ("user", "action", "resource", "record", "from", "to", "success")

    def list_query(self, request: Request) -> Select[Any]:
        return apply_filters(super().list_query(request), request.query_params)

    async def list_context(self, request: Request) -> dict[str, Any]:
        context = await super().list_context(request)
        q = request.query_params
        resources = {**RESOURCES, **_OTHER_RESOURCES}
        chain = await anyio.to_thread.run_sync(_chain_status)
        return {**context, "af": {k: q.get(k, "")[:64] for k in self.FILTERS},
                "af_actions": sorted(ACTION_LABELS.items(), key=lambda kv: kv[1]),
                "af_resources": sorted(resources.items(), key=lambda kv: kv[1]),
                "chain_head": describe_head(chain), "chain_tail": describe_tail(chain),
                "chain_stalled": chain.sealing_stalled}

    async def get_object_for_details(self, request: Request) -> Any:
        """The row, with the personal values in its changes as the viewer sees them elsewhere."""
        row = await super().get_object_for_details(request)
        if row is not None and isinstance(row.changes, dict):
            changes = await anyio.to_thread.run_sync(
                masked_changes, principal_of(request), row.resource, row.resource_id, row.changes)
            set_committed_value(row, "changes", changes)
        return row

    async def insert_model(self, request: Request, data: dict[str, Any]) -> Any:
        raise PermissionError("审计日志只读")

    async def update_model(self, request: Request, pk: str, data: dict[str, Any]) -> Any:
        raise PermissionError("审计日志只读")

    async def delete_model(self, request: Request, pk: Any) -> None:
        raise PermissionError("审计日志只读")


def masked_changes(principal: Principal, resource: str | None, resource_id: str | None,
                   changes: dict[str, Any]) -> dict[str, Any]:
    """``changes`` of an audit row about ``resource`` / ``resource_id`` with the personal values (a
    phone, an e-mail, an address: ``core.masking``) masked where the viewer sees that record masked
    — without the permission, or by a rule (a pool that hides its customers) — so the log shows no
    more than the record's own pages. A record that no longer exists is judged by the customer the
    row names, else by whether the viewer sees everyone's personal data."""
    spec = next((p for p in masking.personal_models() if resource_of(p.model) == resource), None)
    if spec is None or not any(name in changes for name in spec.fields):
        return changes
    with session_factory()() as session:
        customer_id = _customer_of(session, spec, resource_id, changes)
        if customer_id is None:  # the record and its customer are gone: no pool can hide it any more
            hide = not masking.sees_all_personal_data(principal)
        else:
            hide = customer_id in masking.customers_masked_for(session, principal, [customer_id])
    if not hide:
        return changes

    def shown(name: str, value: Any) -> Any:
        if isinstance(value, list):
            return [shown(name, v) for v in value]
        return masking.masked_value(spec.model, name, value)

    return {key: shown(key, value) if key in spec.fields else value for key, value in changes.items()}


def _customer_of(session: Any, spec: masking.PersonalData, resource_id: str | None,
                 changes: dict[str, Any]) -> int | None:
    pk = parse_id(resource_id)
    if pk is None:
        return None
    if spec.customer_key == "id":
        return pk
    model: Any = spec.model
    found = session.execute(select(getattr(model, spec.customer_key)).where(model.id == pk)).scalar()
    if found is None:  # deleted since: a create or delete row names the customer
        named = changes.get(spec.customer_key)
        found = named[-1] if isinstance(named, list) else named
    return parse_id(str(found)) if found is not None else None


def _as_seen(request: Request, value: Any) -> Any:
    """A recorded value as the viewer may see it: in full for who sees all personal data, else masked."""
    if value is None:
        return ""  # as the default formatter shows nothing
    if masking.sees_all_personal_data(principal_of(request)):
        return value
    return masking.mask_recorded(value)


def _chain_status() -> ChainReport:
    with session_factory()() as session:
        return chain_status(session)


class AuditAnalysisPage(CrmBaseView):
    """日志分析: actions per day and per user, failed logins, the most touched resources."""

    name = "日志分析"
    icon = "fa-solid fa-chart-column"
    category = "系统管理"
    resource = "audit"

    @route("/audit/analysis", identity="audit-analysis", permission=("audit", "list"))
    async def analysis(self, request: Request) -> Response:
        params = dict(request.query_params)
        if not params.get("from"):
            params["from"] = (local_today() - dt.timedelta(days=29)).isoformat()
        data = await anyio.to_thread.run_sync(_analysis, params)
        return await self.templates.TemplateResponse(request, "audit/analysis.html", {
            "title": "日志分析", "params": params, "labels": ACTION_LABELS, "resource_label": resource_label,
            **data})


def _analysis(params: dict[str, str]) -> dict[str, Any]:
    def rows(stmt: Any) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in session.execute(apply_filters(stmt, params)).all()]

    # one read transaction: the daily counts and the unsealed tail come from the same state (a sealing
    # pass commits both the seal and the counts at once)
    with session_factory()() as session:
        if (params.get("record") or "").strip():  # one record's rows: few, through its index
            counts = _direct_counts(rows)
        else:
            counts = _daily_counts(session, params)
        failed = rows(select(AuditLog.username, AuditLog.ip, func.count(), func.max(AuditLog.occurred_at))
                      .where(AuditLog.action.in_(("login_failed", "lockout")))
                      .group_by(AuditLog.username, AuditLog.ip).order_by(func.count().desc()).limit(20))
        denied = rows(select(AuditLog.username, AuditLog.resource, func.count())
                      .where(AuditLog.action == "permission_denied")
                      .group_by(AuditLog.username, AuditLog.resource).order_by(func.count().desc()).limit(20))
    per_day, per_user, per_action, top_resources = counts

    def peak(values: list[tuple[Any, ...]], idx: int = 1) -> int:
        return max([int(v[idx]) for v in values] or [1]) or 1

    return {"per_day": per_day, "per_user": per_user, "per_action": per_action, "failed": failed,
            "top_resources": top_resources, "denied": denied,
            "max_day": peak(per_day), "max_user": peak(per_user), "max_resource": peak(top_resources)}


Counts = tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]]


def _direct_counts(rows: Any) -> Counts:
    day = local_date_sql(AuditLog.occurred_at)  # the company's days
    per_day = rows(select(day, func.count()).group_by(day).order_by(day))
    per_user = rows(select(AuditLog.username, func.count()).group_by(AuditLog.username)
                    .order_by(func.count().desc()).limit(20))
    per_action = rows(select(AuditLog.action, func.count()).group_by(AuditLog.action)
                      .order_by(func.count().desc()))
    top_resources = rows(select(AuditLog.resource, func.count()).where(AuditLog.resource != "")
                         .group_by(AuditLog.resource).order_by(func.count().desc()).limit(15))
    return per_day, per_user, per_action, top_resources


def _daily_filters(stmt: Select[Any], table: Any, params: dict[str, str], *, by_user: bool) -> Select[Any]:
    """``apply_filters`` on a daily count table (no record filter: that one goes to ``audit_log``)."""
    if by_user and (user := (params.get("user") or "").strip()):
        user_id = parse_id(user) if user.isdigit() else None
        stmt = stmt.where(table.c.user_id == user_id) if user_id is not None else stmt.where(
            table.c.username == user[:64])
    if action := (params.get("action") or "").strip():
        stmt = stmt.where(table.c.action == action)
    if resource := (params.get("resource") or "").strip():
        stmt = stmt.where(table.c.resource == resource)
    if since := parse_date(params.get("from")):
        stmt = stmt.where(table.c.day >= since)
    if until := parse_date(params.get("to")):
        stmt = stmt.where(table.c.day <= until)
    if params.get("success") in ("0", "1"):
        stmt = stmt.where(table.c.success.is_(params.get("success") == "1"))
    return stmt


def _daily_counts(session: Any, params: dict[str, str]) -> Counts:
    """The sealed rows' counts from ``audit_daily``/``audit_daily_user``, plus the unsealed tail."""
    by_user = bool((params.get("user") or "").strip())
    totals = (AuditDailyUser if by_user else AuditDaily).__table__
    # the per-user counts of a period filtered by nothing else come from the smaller table
    unfiltered = not any((params.get(k) or "").strip() for k in ("action", "resource")) and \
        params.get("success") not in ("0", "1")
    users = (AuditDailyUserTotal if unfiltered else AuditDailyUser).__table__
    n = func.sum(totals.c.n)
    per_day: Counter[Any] = Counter()
    per_user: Counter[str] = Counter()
    per_action: Counter[str] = Counter()
    per_resource: Counter[str] = Counter()
    for key, into in ((totals.c.day, per_day), (totals.c.action, per_action), (totals.c.resource, per_resource)):
        stmt = _daily_filters(select(key, n).group_by(key), totals, params, by_user=by_user)
        into.update({k: int(v) for k, v in session.execute(stmt).all()})
    stmt = _daily_filters(select(users.c.username, func.sum(users.c.n)).group_by(users.c.username),
                          users, params, by_user=True)
    per_user.update({k: int(v) for k, v in session.execute(stmt).all()})
    day = local_date_sql(AuditLog.occurred_at)
    tail_stmt: Any = (
        select(day, AuditLog.username, AuditLog.action, AuditLog.resource, func.count())
        .where(AuditLog.seal_seq.is_(None)).group_by(day, AuditLog.username, AuditLog.action, AuditLog.resource))
    tail = apply_filters(tail_stmt, params)
    for d, username, action, resource, count in session.execute(tail).all():
        if isinstance(d, str):  # SQLite hands dates back as text
            d = dt.date.fromisoformat(d)
        per_day[d] += count
        per_user[username] += count
        per_action[action] += count
        per_resource[resource] += count
    per_resource.pop("", None)

    def top(counter: Counter[Any], limit: int | None = None) -> list[tuple[Any, ...]]:
        ranked = sorted(((k, v) for k, v in counter.items() if v), key=lambda kv: (-kv[1], str(kv[0])))
        return ranked[:limit] if limit else ranked

    return (sorted((k, v) for k, v in per_day.items() if v), top(per_user, 20), top(per_action),
            top(per_resource, 15))


VIEWS = [AuditLogAdmin, AuditAnalysisPage]
