from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from crm_admin import db
from crm_admin.core.context import SYSTEM, acting_as
from crm_admin.settings import get_settings
from tests.notifications.receivers import SmtpSink, WebhookReceiver


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    r = WebhookReceiver().start()
    yield r
    r.stop()


@pytest.fixture
def smtp_sink(monkeypatch: pytest.MonkeyPatch) -> Iterator[SmtpSink]:
    sink = SmtpSink().start()
    monkeypatch.setenv("CRM_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("CRM_SMTP_PORT", str(sink.port))
    monkeypatch.setenv("CRM_SMTP_TLS", "none")
    monkeypatch.setenv("CRM_SMTP_FROM", "crm@example.com")
    get_settings.cache_clear()
    yield sink
    sink.stop()
    monkeypatch.undo()
    get_settings.cache_clear()


@pytest.fixture
def add_channel() -> Any:
    from crm_admin.notifications import service

    def factory(**kw: Any) -> int:
        with acting_as(SYSTEM), db.transaction() as session:
            return service.add_channel(session, **kw).id

    return factory
