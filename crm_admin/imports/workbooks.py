"""Workbooks the import writes: the blank template of an importer, and the error workbook of a job."""

from __future__ import annotations

import csv
import io

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Font

from crm_admin.core.export import safe
from crm_admin.imports.cells import cell_text
from crm_admin.imports.spec import ImportSpec, Row

ERROR_HEADER = "错误原因"
ROW_HEADER = "行号"


def template_xlsx(spec: ImportSpec) -> bytes:
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = f"{spec.title}导入"
    bold = Font(bold=True)
    for i, col in enumerate(spec.columns, 1):
        cell = ws.cell(row=1, column=i, value=col.header + ("*" if col.required else ""))
        cell.font = bold
        ws.cell(row=2, column=i, value=col.example or None)
        ws.column_dimensions[cell.column_letter].width = max(12, len(col.header) * 2 + 4)
    ws.freeze_panes = "A2"
    notes = wb.create_sheet("说明")
    notes.append(["列", "必填", "说明"])
    for col in spec.columns:
        notes.append([col.header, "是" if col.required else "", col.note])
    notes.append([])
    for line in spec.notes():
        notes.append([line])
    notes.append([])
    notes.append(["第二行是示例,导入前请删除或覆盖。支持 .xlsx 和 CSV(UTF-8 或 GB18030)。"])
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def template_csv(spec: ImportSpec) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow([c.header + ("*" if c.required else "") for c in spec.columns])
    writer.writerow([c.example for c in spec.columns])
    return ("\ufeff" + buf.getvalue()).encode("utf-8")


class ErrorBook:
    """Rejected rows with their reason, written to a local file as they come (write-only workbook);
    the runner then keeps the file in the database."""

    def __init__(self, path: str, spec: ImportSpec) -> None:
        self.path = path
        self.spec = spec
        self.wb = Workbook(write_only=True)
        self.ws = self.wb.create_sheet(title="未导入的行")
        bold = Font(bold=True)
        headers = [ROW_HEADER, ERROR_HEADER, *(c.header for c in spec.columns)]
        cells = []
        for h in headers:
            cell = WriteOnlyCell(self.ws, value=h)
            cell.font = bold
            cells.append(cell)
        self.ws.append(cells)
        self.count = 0

    def add(self, row: Row) -> None:
        self.ws.append([row.number, row.error, *(safe(cell_text(row.raw.get(c.key))) for c in self.spec.columns)])
        self.count += 1

    def close(self) -> None:
        self.wb.save(self.path)
