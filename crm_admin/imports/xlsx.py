"""The first worksheet of an .xlsx upload, read as openpyxl's ``values_only`` gives it, streamed and bounded.

The parts it needs (relationships, workbook, styles, shared strings, the worksheet) come through
``package.elements``; every row or shared string is dropped once read (see ``spreadsheet.py``).
"""

from __future__ import annotations

import datetime as dt
import posixpath
import re
import zipfile
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from openpyxl.styles.numbers import BUILTIN_FORMATS, is_date_format, is_timedelta_format
from openpyxl.utils.datetime import MAC_EPOCH, WINDOWS_EPOCH, from_excel, from_ISO8601

from crm_admin.core.errors import UserError
from crm_admin.imports.package import elements, inflate, open_package
from crm_admin.imports.spreadsheet import (
    GAP_MAX_BYTES,
    MAX_CELL_CHARS,
    MAX_COLUMNS,
    MAX_SHEET_CELLS,
    MAX_SHEET_ROW,
    SHARED_STRINGS_MAX_COUNT,
    SHARED_STRINGS_MAX_TEXT_BYTES,
    UNIT_MAX_BYTES,
    ZIP_MAX_MEMBERS,
    abnormal,
    cell_too_long,
    size_text,
    too_many_cells,
)

_MAIN_NS = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
_REL_NS = "{http://schemas.openxmlformats.org/package/2006/relationships}"
_DOC_REL_ID = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}id"
_ROW, _CELL, _SHEET_DATA = _MAIN_NS + "row", _MAIN_NS + "c", _MAIN_NS + "sheetData"
_SI, _T, _R, _V, _IS = _MAIN_NS + "si", _MAIN_NS + "t", _MAIN_NS + "r", _MAIN_NS + "v", _MAIN_NS + "is"


def _relationships(archive: zipfile.ZipFile, name: str) -> dict[str, tuple[str, str]]:
    """Id → (type, target path inside the package) of a ``.rels`` part."""
    base = posixpath.dirname(posixpath.dirname(name))  # "xl/_rels/workbook.xml.rels" → "xl"
    found: dict[str, tuple[str, str]] = {}
    for rel in elements(archive, name, (_REL_NS + "Relationship",)):
        target = rel.get("Target") or ""
        if rel.get("TargetMode") == "External" or not target:
            continue
        path = posixpath.normpath(target[1:] if target.startswith("/") else posixpath.join(base, target))
        if len(found) < ZIP_MAX_MEMBERS:
            found[rel.get("Id") or ""] = (rel.get("Type") or "", path)
    return found


@dataclass
class _Workbook:
    sheet: str
    shared_strings: str | None
    styles: str | None
    epoch: dt.datetime


def _locate(archive: zipfile.ZipFile) -> _Workbook:
    """The workbook's first worksheet and the parts it needs, as Excel finds them."""
    names = set(archive.namelist())
    if "_rels/.rels" not in names:
        raise UserError("压缩包里不是 Excel 表格,请上传 .xlsx 文件本身(不要压缩或打包)。")
    main = next((p for t, p in _relationships(archive, "_rels/.rels").values()
                 if t.endswith("/officeDocument")), None)
    if main is None or main not in names:
        raise UserError("压缩包里不是 Excel 表格,请上传 .xlsx 文件本身(不要压缩或打包)。")
    rels_name = posixpath.join(posixpath.dirname(main), "_rels", posixpath.basename(main) + ".rels")
    rels = _relationships(archive, rels_name) if rels_name in names else {}
    sheet = None
    epoch = WINDOWS_EPOCH
    for element in elements(archive, main, (_MAIN_NS + "sheet", _MAIN_NS + "workbookPr",
                                             _MAIN_NS + "definedName", _MAIN_NS + "workbookView")):
        if element.tag == _MAIN_NS + "workbookPr":
            if element.get("date1904") in ("1", "true"):
                epoch = MAC_EPOCH
        elif element.tag == _MAIN_NS + "sheet" and sheet is None:
            kind, target = rels.get(element.get(_DOC_REL_ID) or "", ("", ""))
            if kind.endswith("/worksheet") and target in names:
                sheet = target
    if sheet is None:
        raise UserError("表格中没有内容(找不到工作表)。")

    def part(kind: str) -> str | None:
        return next((p for t, p in rels.values() if t.endswith(kind) and p in names), None)

    return _Workbook(sheet=sheet, shared_strings=part("/sharedStrings"), styles=part("/styles"), epoch=epoch)


def _date_styles(archive: zipfile.ZipFile, name: str | None) -> tuple[set[int], set[int]]:
    """Indexes of the cell styles that show a date, and of those that show a duration."""
    if name is None:
        return set(), set()
    custom: dict[int, str] = {}
    numbers: list[int] = []
    units = tuple(_MAIN_NS + t for t in ("numFmt", "xf", "font", "fill", "border", "cellStyle", "dxf"))
    for element in elements(archive, name, units):
        if element.tag == _MAIN_NS + "numFmt":
            with_id = element.get("numFmtId") or ""
            if with_id.isdigit():
                custom[int(with_id)] = element.get("formatCode") or ""
        elif element.tag == _MAIN_NS + "xf" and element.getparent().tag == _MAIN_NS + "cellXfs":
            with_id = element.get("numFmtId") or "0"
            numbers.append(int(with_id) if with_id.isdigit() else 0)
            if len(numbers) > 2 * 65_536:  # Excel keeps 64,000 at most
                raise abnormal(f"{name} 中的单元格样式过多")
    dates, durations = set(), set()
    for index, number in enumerate(numbers):
        code = custom.get(number) or BUILTIN_FORMATS.get(number)
        if is_date_format(code):
            dates.add(index)
        if is_timedelta_format(code):
            durations.add(index)
    return dates, durations


class SharedStrings:
    """The workbook's shared texts, kept as UTF-8 in one buffer (a fifth of a list of ``str``)."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.ends = array("I")

    def add(self, text: str) -> None:
        if len(self.ends) >= SHARED_STRINGS_MAX_COUNT:
            raise abnormal(f"共享文本超过 {SHARED_STRINGS_MAX_COUNT} 条")
        if len(text) > MAX_CELL_CHARS:
            raise cell_too_long(None)
        self.data += text.encode("utf-8", "surrogatepass")
        if len(self.data) > SHARED_STRINGS_MAX_TEXT_BYTES:
            raise abnormal(f"共享文本超过 {size_text(SHARED_STRINGS_MAX_TEXT_BYTES)}")
        self.ends.append(len(self.data))

    def __getitem__(self, index: int) -> str:
        start = self.ends[index - 1] if index > 0 else 0
        return self.data[start:self.ends[index]].decode("utf-8", "surrogatepass")

    def __len__(self) -> int:
        return len(self.ends)


def _text(element: Any) -> str:
    """The plain text of a shared or inline string: its ``t`` and its runs' ``t``, no phonetics."""
    parts = []
    for child in element:
        if child.tag == _T:
            parts.append(child.text or "")
        elif child.tag == _R:
            for t in child.iterchildren(_T):
                parts.append(t.text or "")
    return "".join(parts)


def _shared_strings(archive: zipfile.ZipFile, name: str | None) -> SharedStrings:
    strings = SharedStrings()
    if name is not None:
        for element in elements(archive, name, (_SI,)):
            strings.add(_text(element).replace("x005F_", ""))
    return strings


_COLUMNS: dict[str, int] = {}  # column letters → number, learnt as met (16,384 at most)


def _column(ref: str) -> int:
    """The column number of a cell reference such as "AB12"; 0 when it is not one."""
    letters = ref.rstrip("0123456789")
    column = _COLUMNS.get(letters)
    if column is None:
        if not (0 < len(letters) <= 3 and letters.isascii() and letters.isalpha() and letters.isupper()
                and letters != ref):
            return 0
        column = 0
        for letter in letters:
            column = column * 26 + ord(letter) - 64
        if column <= MAX_COLUMNS:
            _COLUMNS[letters] = column
    return column


def _number(text: str) -> int | float:
    return float(text) if ("." in text or "e" in text or "E" in text) else int(text)


def xlsx_rows(path: str) -> Iterator[list[Any]]:
    """The first worksheet's rows as lists of cell values, as openpyxl's ``values_only`` gives them
    (numbers, dates by cell style, booleans, texts); missing rows come as empty lists."""
    with open_package(path) as archive:
        book = _locate(archive)
        dates, durations = _date_styles(archive, book.styles)
        strings = _shared_strings(archive, book.shared_strings)
        number = cells = 0
        for row in elements(archive, book.sheet, (_ROW,), stop=_SHEET_DATA):
            cells += len(row)
            if cells > MAX_SHEET_CELLS:
                raise too_many_cells()
            at = row.get("r")
            if at is not None:
                if not at.isdigit() or not number < int(at) <= MAX_SHEET_ROW:
                    raise abnormal(f"工作表的行号 {at[:20]} 无效")
                while number < int(at) - 1:  # rows the file leaves out are empty
                    number += 1
                    yield []
            number += 1
            if number > MAX_SHEET_ROW:
                raise abnormal(f"工作表超过 {MAX_SHEET_ROW} 行")
            yield _cells(row, number, strings, dates, durations, book.epoch)


def _cells(row: Any, number: int, strings: SharedStrings, dates: set[int], durations: set[int],
           epoch: dt.datetime) -> list[Any]:
    values: list[Any] = []
    for cell in row:  # lxml's find() parses its path at every call: a third of the time on 200,000 rows
        if cell.tag != _CELL:
            continue
        attrib = cell.attrib
        ref = attrib.get("r")
        if ref:
            column = _column(ref)
            if not 0 < column <= MAX_COLUMNS:
                raise abnormal(f"第 {number} 行的单元格位置 {ref[:20]} 无效")
        else:
            column = len(values) + 1
            if column > MAX_COLUMNS:
                raise abnormal(f"第 {number} 行超过 {MAX_COLUMNS} 列")
        if column > len(values):
            values.extend([None] * (column - len(values)))
        values[column - 1] = _value(cell, attrib, number, strings, dates, durations, epoch)
    return values


def _value(cell: Any, attrib: Any, number: int, strings: SharedStrings, dates: set[int],
           durations: set[int], epoch: dt.datetime) -> Any:
    kind = attrib.get("t", "n")
    value: Any = None
    if kind == "inlineStr":
        for child in cell:
            if child.tag == _IS:
                value = _text(child)
                break
    else:
        for child in cell:
            if child.tag == _V:
                value = child.text
                break
        if not value:
            return None
        try:
            if kind == "s":
                value = strings[int(value)]
            elif kind == "n":
                value = _number(value)
                style = attrib.get("s", "0")
                style_id = int(style) if style.isdigit() else 0
                if style_id in dates:
                    try:
                        value = from_excel(value, epoch, timedelta=style_id in durations)
                    except (OverflowError, ValueError):
                        value = "#VALUE!"
            elif kind == "b":
                value = bool(int(value))
            elif kind == "d":
                value = from_ISO8601(value)
        except (ValueError, IndexError, OverflowError):
            raise abnormal(f"第 {number} 行有无法识别的单元格内容") from None
    if isinstance(value, str) and len(value) > MAX_CELL_CHARS:
        raise cell_too_long(number)
    return value


_ROW_START = re.compile(rb"<(?:[A-Za-z_][\w.-]{0,31}:)?row[\s>/]")
_ROW_END = re.compile(rb"</(?:[A-Za-z_][\w.-]{0,31}:)?row>")


def xlsx_row_count(path: str) -> int:
    """How many rows the first worksheet has (blank ones included), counted from its XML without
    parsing it: quick enough to know the size before reading, and to notice a file past the cap."""
    with open_package(path) as archive:
        sheet = archive.getinfo(_locate(archive).sheet)
        count, tail = 0, b""
        for chunk in inflate(archive, sheet):
            data = tail + chunk
            last = data.rfind(b"<")
            cut = last if last >= len(data) - 64 else len(data)  # a start tag cut in two waits
            count += len(_ROW_START.findall(data, 0, cut))
            tail = data[cut:]
        return count + len(_ROW_START.findall(tail))


def xlsx_rows_with_values(path: str, enough: int) -> int:
    """How many rows of the first worksheet hold at least one value, counted from its XML without
    parsing it, up to ``enough``: a few seconds where reading 200,000 rows takes a minute."""
    with open_package(path) as archive:
        sheet = archive.getinfo(_locate(archive).sheet)
        count, tail = 0, b""
        for chunk in inflate(archive, sheet):
            data = tail + chunk
            at = 0
            while start := _ROW_START.search(data, at):
                close = data.find(b">", start.start())
                if close < 0:
                    break
                if data[close - 1:close] == b"/":  # <row .../>: no cells
                    at = close + 1
                    continue
                end = _ROW_END.search(data, close)
                if end is None:
                    break
                if data.find(b"v>", close, end.start()) >= 0 or data.find(b"is>", close, end.start()) >= 0:
                    count += 1
                    if count >= enough:
                        return count
                at = end.end()
            tail = data[at:]
            if len(tail) > UNIT_MAX_BYTES + GAP_MAX_BYTES:
                raise abnormal(f"{sheet.filename} 中有一行的内容超过 {size_text(UNIT_MAX_BYTES)}")
        return count

