"""What the API module adds to the web application: ``/api/v1`` (found by ``web/app.py`` as every
module's ``mounts.py`` is)."""

from __future__ import annotations

from typing import Any

from crm_admin.api.app import build_api
from crm_admin.api.routes import API_PREFIX


def mount(app: Any, admin: Any) -> None:
    app.mount(API_PREFIX, build_api(admin), name="api")
