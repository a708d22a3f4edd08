"""An upload's kind (sniffed, and refused early when it cannot be read) and its rows, in batches.

Reading streams, within the limits of ``spreadsheet.py``: ``.xlsx`` through the bounded streaming
reader (``xlsx.py``), CSV as UTF-8 (with or without BOM) or GB18030 (what Chinese Excel saves),
decoded while reading. Rows are handled in batches, never all held at once; a file past the row cap
is refused before any row is checked.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

from crm_admin.core.errors import UserError
from crm_admin.imports import spreadsheet, xlsx
from crm_admin.imports.cells import cell_text
from crm_admin.imports.package import open_package
from crm_admin.imports.spec import Column, ImportSpec, Row

BATCH = 500
MAX_UPLOAD_BYTES = spreadsheet.MAX_UPLOAD_BYTES
MAX_ROWS = spreadsheet.MAX_ROWS


def sniff(path: str) -> str:
    """'xlsx' or 'csv', or a UserError saying clearly what is wrong with the file.

    A zip's directory is checked here, at upload, against the limits of ``spreadsheet.py`` (member
    count, names, declared sizes, ratio, encryption): the worst files are refused on the import page
    before any job starts."""
    size = os.path.getsize(path)
    if size == 0:
        raise UserError("上传的文件是空的(0 字节),请检查后重新上传。")
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        open_package(path).close()
        return "xlsx"
    if head.startswith(b"\xd0\xcf\x11\xe0"):
        if _encrypted_workbook(path):
            raise UserError("文件设置了打开密码,无法读取。请在 Excel 中取消密码后另存为 .xlsx 再上传。")
        raise UserError("不支持旧版 Excel(.xls)文件,请在 Excel 中另存为 .xlsx 或 CSV 后再上传。")
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise UserError("文件是 UTF-16 编码的文本(Excel 的“Unicode 文本”),请在 Excel 中另存为 .xlsx 或"
                        "“CSV UTF-8(逗号分隔)”后上传。")
    encoding = spreadsheet.csv_encoding(path)
    if encoding is None:
        raise UserError("文件不是 Excel(.xlsx)或 CSV 表格,请使用下载的模板填写后上传。")
    spreadsheet.check_csv_text(path, encoding)
    return "csv"


def _encrypted_workbook(path: str) -> bool:
    """A password-protected .xlsx is an OLE file holding an "EncryptedPackage" stream."""
    marker = "EncryptedPackage".encode("utf-16-le")
    with open(path, "rb") as fh:
        return marker in fh.read(MAX_UPLOAD_BYTES)


def _raw_rows(path: str, kind: str) -> Iterator[list[Any]]:
    """The sheet's rows as lists of cell texts."""
    rows = xlsx.xlsx_rows(path) if kind == "xlsx" else spreadsheet.csv_rows(path)
    for values in rows:
        yield [cell_text(v) for v in values]


def estimate_rows(path: str, kind: str) -> int | None:
    """Rows of the sheet, header and blank rows included, counted without reading them (for
    progress, and to notice a file past the row cap before any row is checked)."""
    count = xlsx.xlsx_row_count(path) if kind == "xlsx" else spreadsheet.count_lines(path)
    return count or None


def _normal_header(text: Any) -> str:
    header = "" if text is None else str(text).strip()
    return header.replace("*", "").replace("*", "").replace(" ", "").replace("\ufeff", "")


def read_rows(path: str, kind: str, spec: ImportSpec,
              sized: Callable[[int | None], None] | None = None, options: dict[str, Any] | None = None,
              ) -> Iterator[Row]:
    """Rows of the first sheet keyed by the spec's columns (matched by header); blank rows skipped.

    ``sized`` is told the estimated number of data rows when the reading starts; ``options``: the job's
    (an import that updates needs other columns than one that creates: ``spec.required_columns``)."""
    if sized is not None:
        lines = estimate_rows(path, kind)
        sized(lines - 1 if lines and lines > 1 else None)  # the header row is not data
    rows = _raw_rows(path, kind)
    header: list[Any] | None = None
    for values in rows:
        if any(v not in (None, "") for v in values):
            header = values
            break
    if header is None:
        raise UserError("表格中没有内容(找不到表头行)。")
    by_header = {_normal_header(c.header): c for c in spec.columns}
    positions: dict[int, Column] = {}
    for i, text in enumerate(header):
        col = by_header.get(_normal_header(text))
        if col is not None and col.key not in {c.key for c in positions.values()}:
            positions[i] = col
    missing = [c.header for c in spec.required_columns(options or {}) if c not in positions.values()]
    if missing:
        raise UserError(f"表头缺少必填列:{'、'.join(missing)}。请使用下载的模板(第一行为表头)。")
    number = 1
    for values in rows:
        number += 1
        if not any(v not in (None, "") for v in values):
            continue
        raw = {col.key: (values[i] if i < len(values) else None) for i, col in positions.items()}
        yield Row(number=number, raw=raw)


def batches(rows: Iterator[Row], size: int = BATCH) -> Iterator[list[Row]]:
    batch: list[Row] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def refuse_past_cap(path: str, kind: str, spec: ImportSpec, options: dict[str, Any] | None = None) -> None:
    """More lines than the cap may still be fewer rows (blank rows, texts over several lines):
    count the rows that hold something, without checking them, and stop one past the cap."""
    if kind == "xlsx":
        if xlsx.xlsx_rows_with_values(path, MAX_ROWS + 2) > MAX_ROWS + 1:  # and the header
            raise spreadsheet.too_many_rows()
        return
    for count, _row in enumerate(read_rows(path, kind, spec, options=options), 1):
        if count > MAX_ROWS:
            raise spreadsheet.too_many_rows()
