"""Times stored in UTC and shown/entered in Asia/Shanghai; money, dates and yes/no displayed the Chinese way."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Any, ClassVar

from sqlalchemy import select, text
from starlette.datastructures import FormData

from crm_admin import db
from crm_admin.core.formatting import (
    TYPE_FORMATTERS,
    format_bool,
    format_date,
    format_datetime,
    format_money,
    local_to_utc,
    to_local,
)
from crm_admin.core.forms import CrmForm, LocalDateTimeField
from tests.conftest import csrf_token

UTC = dt.UTC


def test_datetime_is_shown_in_shanghai_time() -> None:
    stored = dt.datetime(2026, 11, 25, 8, 30, tzinfo=UTC)
    assert format_datetime(stored) == "2026-11-25 16:30"
    assert format_datetime(stored, seconds=True) == "2026-11-25 16:30:00"
    # naive values are UTC as stored
    assert format_datetime(dt.datetime(2026, 11, 25, 20, 0)) == "2026-11-26 04:00"
    assert format_datetime(None) == ""
    assert to_local(stored).utcoffset() == dt.timedelta(hours=8)


def test_date_is_shown_iso() -> None:
    assert format_date(dt.date(2026, 11, 25)) == "2026-11-25"
    # an instant late in the UTC evening is already the next day in Shanghai
    assert format_date(dt.datetime(2026, 11, 25, 17, 0, tzinfo=UTC)) == "2026-11-26"
    assert format_date(None) == ""


def test_money_has_thousands_separators_and_two_decimals() -> None:
    assert format_money(Decimal("1234.56")) == "1,234.56"
    assert format_money(Decimal("1234.5")) == "1,234.50"
    assert format_money(Decimal("1234567")) == "1,234,567.00"
    assert format_money(Decimal("-98765.43")) == "-98,765.43"
    assert format_money(Decimal("0.125")) == "0.125"  # never rounds away what is stored
    assert format_money(0) == "0.00"
    assert format_money(None) == ""


def test_bool_is_yes_no() -> None:
    assert format_bool(True) == "是"
    assert format_bool(False) == "否"
    assert format_bool(None) == ""


def test_type_formatters_cover_list_and_details() -> None:
    from crm_admin.core.views import CrmModelView

    assert CrmModelView.column_type_formatters is TYPE_FORMATTERS
    assert CrmModelView.column_type_formatters_detail is TYPE_FORMATTERS
    assert TYPE_FORMATTERS[dt.datetime](dt.datetime(2026, 11, 25, 0, 0, tzinfo=UTC)) == "2026-11-25 08:00"
    assert TYPE_FORMATTERS[Decimal](Decimal("1234.56")) == "1,234.56"
    assert TYPE_FORMATTERS[bool](True) == "是"
    assert TYPE_FORMATTERS[type(None)](None) == ""


class _Form(CrmForm):
    at = LocalDateTimeField("时间")


def test_local_datetime_field_round_trip() -> None:
    form = _Form(FormData([("at", "2026-11-25T08:00")]))
    assert form.validate(), form.errors
    assert form.at.data == dt.datetime(2026, 11, 25, 0, 0, tzinfo=UTC)
    shown = _Form(data={"at": dt.datetime(2026, 11, 25, 0, 0, tzinfo=UTC)})
    assert shown.at._value() == "2026-11-25T08:00"
    assert 'type="datetime-local"' in shown.at()
    assert 'value="2026-11-25T08:00"' in shown.at()
    # a space instead of the T, and seconds, are accepted too
    assert _Form(FormData([("at", "2026-11-25 08:00:30")])).at.data == dt.datetime(2026, 11, 25, 0, 0, 30, tzinfo=UTC)
    assert local_to_utc(dt.datetime(2026, 1, 1, 0, 0)) == dt.datetime(2025, 12, 31, 16, 0, tzinfo=UTC)


def test_bad_datetime_gets_a_chinese_message() -> None:
    from crm_admin.core import i18n

    i18n.install()
    form = _Form(FormData([("at", "明天上午")]))
    assert not form.validate()
    assert form.at.errors == ["日期时间格式不正确(例如 2026-11-25 08:00)。"]


def _job_run_view() -> Any:
    from crm_admin.core.views import CrmModelView
    from crm_admin.scheduler.models import JobRun

    class JobRunFormView(CrmModelView, model=JobRun):
        form_columns: ClassVar[list[str]] = ["job", "started_at", "finished_at", "status"]

    JobRunFormView.session_maker = db.session_factory()
    return JobRunFormView()


def test_view_form_stores_utc_and_shows_shanghai(engine: Any) -> None:
    """Enter 2026-11-25 08:00 (Shanghai) → stored 00:00 UTC → shown 08:00 again (list and edit form)."""
    import anyio

    from crm_admin.core.context import SYSTEM, acting_as
    from crm_admin.scheduler.models import JobRun

    view = _job_run_view()
    Form = anyio.run(view.scaffold_form)
    assert isinstance(Form.started_at.field_class, type) and issubclass(Form.started_at.field_class, LocalDateTimeField)
    form = Form(FormData([("job", "birthday_scan"), ("started_at", "2026-11-25T08:00"),
                          ("finished_at", ""), ("status", "ok")]))
    assert form.validate(), form.errors
    assert form.started_at.data == dt.datetime(2026, 11, 25, 0, 0, tzinfo=UTC)
    with acting_as(SYSTEM), db.transaction() as s:
        row = JobRun(**{k: v for k, v in form.data.items() if k in ("job", "started_at", "status")})
        s.add(row)
        s.flush()
        pk = row.id
    with db.session_factory()() as s:
        raw = s.execute(text("SELECT started_at FROM job_run WHERE id = :id"), {"id": pk}).scalar_one()
        if isinstance(raw, str):  # SQLite returns text
            raw = dt.datetime.fromisoformat(raw)
        assert raw.replace(tzinfo=None) == dt.datetime(2026, 11, 25, 0, 0)
        row = s.execute(select(JobRun).where(JobRun.id == pk)).scalar_one()
        assert view._default_formatter(row.started_at) == "2026-11-25 08:00"
        assert view._default_formatter_detail(row.started_at) == "2026-11-25 08:00"
        edit = Form(obj=row)
        assert edit.started_at._value() == "2026-11-25T08:00"


def test_follow_up_form_uses_local_datetime_inputs(admin_client: Any) -> None:
    html = admin_client.get("/admin/follow-up/create").text
    assert re.search(r'<input[^>]*name="contacted_at"[^>]*type="datetime-local"', html) or re.search(
        r'<input[^>]*type="datetime-local"[^>]*name="contacted_at"', html)


def test_list_shows_shanghai_time_and_yes_no(admin_client: Any) -> None:
    from crm_admin.core.context import SYSTEM, acting_as
    from crm_admin.scheduler.models import JobRun

    with acting_as(SYSTEM), db.transaction() as s:
        s.add(JobRun(job="birthday_scan", started_at=dt.datetime(2026, 11, 25, 0, 5, tzinfo=UTC), status="ok"))
    html = admin_client.get("/admin/job-run/list").text
    assert "2026-11-25 08:05" in html
    html = admin_client.get("/admin/sys-user/list").text
    assert "是" in re.sub(r"<[^>]+>", " ", html)  # admin is_active


def test_dept_create_round_trip_via_http(admin_client: Any) -> None:
    """A plain create through the real form with the token and Chinese button label."""
    r = admin_client.post(
        "/admin/sys-dept/create",
        data={"name": "华东大区", "sort": "3", "csrf_token": csrf_token(admin_client), "save": "保存"},
        follow_redirects=False,
    )
    assert r.status_code == 302
    assert "华东大区" in admin_client.get("/admin/sys-dept/list").text
