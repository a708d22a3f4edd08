"""A scheduled job that fails on a database error is recorded in words, never with its SQL (issue 11,
hole 8): the detail is shown on the scheduler page."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import exc as sa_exc

from crm_admin.scheduler import service


def test_a_database_error_in_a_job_is_recorded_without_sql(admin_client: Any,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(_session: Any, _ctx: service.JobContext) -> service.Outcome:
        raise sa_exc.DataError("INSERT INTO customer_care (detail) VALUES (%(detail)s)", {"detail": "秘密"},
                               Exception("(1406, \"Data too long for column 'detail' at row 1\")"))

    spec = service.jobs()["birthday_scan"]
    monkeypatch.setitem(service._JOBS, "birthday_scan",
                        service.JobSpec(spec.name, spec.label, fail, spec.time_setting))
    result = service.run_job("birthday_scan")
    assert result.status == "failed"
    assert "超出允许的范围" in result.detail
    page = admin_client.get("/admin/scheduler").text
    assert "超出允许的范围" in page
    for leak in ("INSERT", "SQL", "秘密", "1406", "DataError", "customer_care"):
        assert leak not in result.detail and leak not in page, leak
