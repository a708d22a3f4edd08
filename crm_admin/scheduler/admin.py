"""Admin view of the scheduler's run history."""

from __future__ import annotations

from crm_admin.core.views import CrmModelView
from crm_admin.scheduler.models import JobRun


class JobRunAdmin(CrmModelView, model=JobRun):
    name = "任务运行记录"
    name_plural = "定时任务"
    icon = "fa-solid fa-clock"
    category = "系统管理"
    can_create = False
    can_edit = False
    can_delete = False
    column_list = [JobRun.job, JobRun.started_at, JobRun.finished_at, JobRun.status, JobRun.created_count]
    column_labels = {"job": "任务", "run_key": "运行批次", "started_at": "开始时间", "finished_at": "结束时间",
                     "status": "状态", "created_count": "生成数量", "detail": "详情", "host": "执行节点",
                     "created_at": "创建时间", "updated_at": "更新时间"}
    column_default_sort = [(JobRun.id, True)]


VIEWS = [JobRunAdmin]
