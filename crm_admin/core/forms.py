"""Form building for every admin view: Chinese validation messages and local-time inputs.

``CrmModelView`` uses ``CrmForm`` as its form base class (WTForms messages in the request's
language) and ``CrmModelConverter`` to build fields from columns:

* ``UTCDateTime`` columns → ``LocalDateTimeField``: an HTML ``datetime-local`` input showing and
  taking the company's wall-clock time (Asia/Shanghai) and handing the model an aware UTC
  datetime (the column type refuses naive ones).
* ``Date`` columns → the browser's own date input (SQLAdmin's picker only speaks English).
* nullable ``Boolean`` → a 是/否 select instead of "True"/"False".
* every field built from a column gets ``FitsColumn``: the value must fit the column (range,
  decimal places, length — ``core/limits.py``), checked before anything is saved.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqladmin.forms import ModelConverter, converts
from sqladmin.i18n import lazy_gettext
from sqlalchemy.orm import ColumnProperty
from wtforms import Field, Form, SelectField, ValidationError
from wtforms.fields import DateField, DateTimeLocalField
from wtforms.fields.core import UnboundField

from crm_admin.core.formatting import local_to_utc, to_local
from crm_admin.core.i18n import WTFORMS_TRANSLATIONS
from crm_admin.core.limits import Limit, column_limit

LOCAL_DATETIME_FORMATS = ("%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S")


class CrmForm(Form):
    class Meta:
        def get_translations(self, form: Any) -> Any:
            return WTFORMS_TRANSLATIONS


class LocalDateTimeField(DateTimeLocalField):
    """Entered and shown in the company's time zone; ``data`` is an aware UTC datetime."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("format", list(LOCAL_DATETIME_FORMATS))
        super().__init__(*args, **kwargs)

    def _value(self) -> str:
        if self.raw_data:
            return " ".join(self.raw_data)
        value: Any = getattr(self, "data", None)
        if isinstance(value, dt.datetime):
            return to_local(value).strftime(self.format[0])
        return ""

    def process_formdata(self, valuelist: list[Any]) -> None:
        super().process_formdata(valuelist)
        value: Any = getattr(self, "data", None)
        if isinstance(value, dt.datetime):
            self.data = local_to_utc(value)


class FitsColumn:
    """The field's value must fit its column: in range, not too many decimals, not too long."""

    def __init__(self, limit: Limit) -> None:
        self.limit = limit

    def __call__(self, form: Form, field: Field) -> None:
        if field.errors:  # not a number at all: the field's own message already says so
            return
        message = self.limit.problem(field.data, str(field.label.text or field.name))
        if message:
            raise ValidationError(message)


def _yes_no_coerce(value: Any) -> bool | None:
    if value in (None, "", "None"):
        return None
    return str(value) in ("True", "true", "1")


class CrmModelConverter(ModelConverter):
    @staticmethod
    def _string_common(prop: ColumnProperty[Any]) -> list[Any]:
        return []  # lengths are checked by FitsColumn, with the field's name in the message

    def _prepare_column(
        self, prop: ColumnProperty[Any], form_include_pk: bool, kwargs: dict[str, Any]
    ) -> dict[str, Any] | None:
        # a fresh list: SQLAdmin appends to it, and it may be the view's own ``form_args`` list
        kwargs["validators"] = list(kwargs.get("validators") or [])
        prepared = super()._prepare_column(prop=prop, form_include_pk=form_include_pk, kwargs=kwargs)
        if prepared is not None:
            limit = column_limit(prop.columns[0])
            if limit is not None:
                prepared["validators"].append(FitsColumn(limit))
        return prepared

    @converts("crm_admin.db.UTCDateTime", "UTCDateTime")
    def conv_utc_datetime(
        self, model: type, prop: ColumnProperty[Any], kwargs: dict[str, Any]
    ) -> UnboundField:
        return LocalDateTimeField(**kwargs)

    @converts("Date")
    def conv_date(self, model: type, prop: ColumnProperty[Any], kwargs: dict[str, Any]) -> UnboundField:
        return DateField(**kwargs)

    @converts("Boolean", "dialects.mssql.base.BIT")
    def conv_boolean(
        self, model: type, prop: ColumnProperty[Any], kwargs: dict[str, Any]
    ) -> UnboundField:
        if not prop.columns[0].nullable:
            return super().conv_boolean(model, prop, kwargs)
        kwargs.setdefault("choices", [(True, lazy_gettext("是")), (False, lazy_gettext("否"))])
        kwargs.setdefault("coerce", _yes_no_coerce)
        kwargs.pop("allow_blank", None)
        kwargs["choices"] = [("", ""), *kwargs["choices"]]
        return SelectField(**kwargs)
