"""The import pages in the admin site (menu: 客户管理 › 数据导入)."""

from crm_admin.imports.pages import ImportView

VIEWS = [ImportView]
