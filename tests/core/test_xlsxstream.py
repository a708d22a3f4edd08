"""The streamed .xlsx: readable by openpyxl, typed cells, safe text, and sent while rows still come."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import openpyxl

from crm_admin.core.export import xlsx_chunks
from crm_admin.core.xlsxstream import column_letter, xlsx_stream


def _book(data: bytes) -> Any:
    assert zipfile.ZipFile(io.BytesIO(data)).testzip() is None
    return openpyxl.load_workbook(io.BytesIO(data))


def test_cells_keep_their_types_and_text_is_safe() -> None:
    rows = [["北京<星辰>&科技", Decimal("1234.50"), 7, 1.25, "", None, "=HYPERLINK(\"x\")", "a\x01b\x0bc",
             " 两端空格 ", True, "长" * 40000]]
    data = b"".join(xlsx_chunks("客户[列表]:2026", ["名称", "金额", "数量", "比例", "空", "无", "公式", "控制",
                                                   "空格", "布尔", "超长"], iter(rows)))
    ws = _book(data).active
    assert ws.title == "客户列表2026" and ws.freeze_panes == "A2"
    assert ws["A1"].value == "名称" and ws["A1"].font.b and not ws["A2"].font.b
    values = next(ws.iter_rows(min_row=2, values_only=True))
    assert values[:4] == ("北京<星辰>&科技", 1234.5, 7, 1.25)
    assert values[4] is None and values[5] is None
    assert values[6] == "'=HYPERLINK(\"x\")"  # a formula stays text
    assert values[7] == "abc" and values[8] == " 两端空格 " and values[9] == "是"
    assert len(values[10]) == 32767


def test_first_bytes_leave_before_the_rows_are_read() -> None:
    consumed = 0

    def rows() -> Iterator[list[Any]]:
        nonlocal consumed
        for i in range(5000):
            consumed += 1
            yield [f"客户{i}", i, Decimal(i) / 4]

    pieces = xlsx_stream("客户", ["名称", "序号", "金额"], rows())
    first = next(pieces)
    assert first.startswith(b"PK") and consumed == 0  # the fixed parts go out before any row is read
    sent = [first]
    consumed_when_sent = []
    for piece in pieces:
        sent.append(piece)
        consumed_when_sent.append(consumed)
    assert consumed_when_sent[0] < 5000 and len(sent) > 3
    ws = _book(b"".join(sent)).active
    assert ws.max_row == 5001 and ws.cell(5001, 1).value == "客户4999" and ws.cell(5001, 3).value == 1249.75


def test_column_letters() -> None:
    assert [column_letter(n) for n in (1, 26, 27, 52, 703)] == ["A", "Z", "AA", "AZ", "AAA"]


def test_empty_export_is_a_valid_workbook() -> None:
    ws = _book(b"".join(xlsx_stream("空", ["名称"], iter([])))).active
    assert ws.max_row == 1 and ws["A1"].value == "名称"
