"""Admin views of the churn module."""

from __future__ import annotations

from crm_admin.churn.models import ChurnAlert, ChurnRule
from crm_admin.core.views import CrmModelView


class ChurnRuleAdmin(CrmModelView, model=ChurnRule):
    name = "预警规则"
    name_plural = "流失预警规则"
    icon = "fa-solid fa-sliders"
    category = "客户流失"
    column_list = [ChurnRule.name, ChurnRule.metric, ChurnRule.threshold, ChurnRule.risk_level,
                   ChurnRule.is_active]
    column_labels = {"name": "规则名称", "metric": "指标", "threshold": "阈值", "risk_level": "风险等级",
                     "is_active": "启用", "created_at": "创建时间", "updated_at": "更新时间"}
    form_excluded_columns = ["created_at", "updated_at"]


class ChurnAlertAdmin(CrmModelView, model=ChurnAlert):
    name = "流失预警"
    name_plural = "流失预警"
    icon = "fa-solid fa-triangle-exclamation"
    category = "客户流失"
    can_create = False
    column_list = [ChurnAlert.customer, ChurnAlert.rule, ChurnAlert.risk_level, ChurnAlert.detected_at,
                   ChurnAlert.status, ChurnAlert.reason]
    column_labels = {
        "customer": "客户", "rule": "规则", "risk_level": "风险等级", "detected_at": "发现时间",
        "status": "状态", "reason": "流失原因", "analysis": "原因分析", "measures": "挽留措施",
        "handler": "处理人", "handled_at": "处理时间", "created_at": "创建时间", "updated_at": "更新时间",
    }
    form_columns = ["status", "reason", "analysis", "measures"]


VIEWS = [ChurnRuleAdmin, ChurnAlertAdmin]
