"""Registers the notification writer and the bell's counter with ``core.notify`` (imported by it on
first use through ``core.discovery``, like every module's ``records.py``)."""

from __future__ import annotations

from crm_admin.core import notify
from crm_admin.db import session_factory
from crm_admin.notifications import service


def _unread(user_id: int) -> int:
    with session_factory()() as session:
        return service.unread_count(session, user_id)


notify.register_writer(service.write_event)
notify.register_unread_counter(_unread, service.unread_count_column)
