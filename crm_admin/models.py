"""Imports every model so that metadata (Alembic, tests) sees the whole schema."""

from crm_admin.accounts.models import CasbinRule, SysDept, SysMeta, SysRole, SysUser
from crm_admin.audit.models import AuditDaily, AuditDailyUser, AuditDailyUserTotal, AuditLog
from crm_admin.care.models import CarePlan, CustomerCare
from crm_admin.churn.models import ChurnAlert, ChurnRule
from crm_admin.contacts.models import Linkman
from crm_admin.core import discovery, limits  # noqa: F401  (limits: the check before every flush)
from crm_admin.customers.models import Customer
from crm_admin.db import Base
from crm_admin.dictionary.models import DictItem, DictType
from crm_admin.followups.models import FollowUp
from crm_admin.imports.models import ImportChunk, ImportJob
from crm_admin.opportunities.models import SalesOpportunity
from crm_admin.orders.models import CustomerOrder, OrderItem
from crm_admin.products.models import Product
from crm_admin.scheduler.models import JobLease, JobRun
from crm_admin.transfers.models import CustomerTransfer

# modules added later (e.g. saved queries, stage history) are picked up without editing this file
discovery.import_each("models")

# Every table is utf8mb4 on MySQL/MariaDB whatever the server's default character set is.
for _table in Base.metadata.tables.values():
    _table.kwargs.setdefault("mysql_charset", "utf8mb4")
    _table.kwargs.setdefault("mysql_collate", "utf8mb4_unicode_ci")
    _table.kwargs.setdefault("mysql_engine", "InnoDB")

__all__ = [
    "AuditDaily", "AuditDailyUser", "AuditDailyUserTotal", "AuditLog", "Base", "CarePlan", "CasbinRule", "ChurnAlert", "ChurnRule", "Customer",
    "CustomerCare", "CustomerOrder", "CustomerTransfer", "DictItem", "DictType", "FollowUp",
    "ImportChunk", "ImportJob", "JobLease", "JobRun", "Linkman", "OrderItem", "Product", "SalesOpportunity", "SysDept",
    "SysMeta", "SysRole", "SysUser",
]
