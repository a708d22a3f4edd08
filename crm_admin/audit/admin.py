"""Admin view of the audit log: read-only for everyone."""

from __future__ import annotations

from crm_admin.audit.models import AuditLog
from crm_admin.core.views import CrmModelView


class AuditLogAdmin(CrmModelView, model=AuditLog):
    name = "审计日志"
    name_plural = "审计日志"
    icon = "fa-solid fa-clipboard-list"
    category = "系统管理"
    can_create = False
    can_edit = False
    can_delete = False
    column_list = [AuditLog.occurred_at, AuditLog.username, AuditLog.ip, AuditLog.action,
                   AuditLog.resource, AuditLog.resource_id, AuditLog.success]
    column_labels = {
        "occurred_at": "时间", "user_id": "用户 ID", "username": "用户", "ip": "IP", "user_agent": "浏览器",
        "action": "操作", "resource": "资源", "resource_id": "记录", "changes": "变更内容", "detail": "说明",
        "success": "成功", "prev_hash": "前序哈希", "hash": "哈希",
    }
    column_default_sort = [(AuditLog.id, True)]


VIEWS = [AuditLogAdmin]
