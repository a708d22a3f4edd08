"""Reading an uploaded spreadsheet (.xlsx or CSV) within fixed limits, whatever the file claims.

An .xlsx file is a zip of XML parts, and a small zip can inflate enormously: a 0.83 MB upload whose
``xl/sharedStrings.xml`` inflates to 340 MB (20 million entries) cost openpyxl 133 s of CPU and
1.8 GB of memory, because openpyxl keeps every shared string, every style and every element it does
not know in memory, even in read-only mode. So uploads are not read with openpyxl here:

1. ``check_package`` reads the zip's end record before anything parses the central directory, then
   checks each member: name (no absolute paths, ``..``, duplicates), no encryption, deflate or
   stored only, declared size per kind of part, total size, and the compression ratio.
2. ``xlsx_rows`` streams the parts it needs (relationships, workbook, styles, shared strings, the
   first worksheet) through lxml's pull parser: the bytes are counted as they are inflated (a zip can
   lie about sizes), no DTD is accepted and entities are never expanded, each row or shared string
   is dropped from the tree once read, and no row, string or stretch between them may pass a size
   limit, so memory stays bounded by the limits below and not by what the file says.
3. ``csv_rows`` reads CSV with a bound on every record and field, refusing NUL bytes.

Every refusal is a ``UserError`` with a message in Chinese that says what is wrong with the file.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import posixpath
import re
import struct
import zipfile
import zlib
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from lxml import etree
from openpyxl.styles.numbers import BUILTIN_FORMATS, is_date_format, is_timedelta_format
from openpyxl.utils.datetime import MAC_EPOCH, WINDOWS_EPOCH, from_excel, from_ISO8601

from crm_admin.core.errors import UserError

KiB = 1024
MiB = 1024 * KiB

# ----- limits: all of them here -----------------------------------------------------------------------
#
# A legitimate import is at most MAX_ROWS rows of the widest template (customers, 13 columns) in an
# upload of at most MAX_UPLOAD_BYTES. Workbooks of 200,000 customer rows were generated and measured
# (member sizes, compression ratios):
#
#   producer, content                              file     sheet XML        sharedStrings.xml
#   openpyxl (inline strings, Chinese as &#NNNNN;):
#     benchmark-like rows (import_bench)           20 MB    212 MB (11:1)    -
#     every column filled, 100-character remarks   84 MB    422 MB  (5:1)    -
#   Excel/WPS style (shared strings, UTF-8):
#     benchmark-like rows                          17 MB     92 MB  (9:1)    47 MB (7:1), 0.9 million texts
#     every column filled, 100-character remarks   70 MB    100 MB  (9:1)   126 MB (2:1), 1.1 million texts
#
# The "every column filled" files are already past the upload cap, so each limit below covers them,
# i.e. more than a file that can be uploaded, and it still refuses every bomb in the tests.

MAX_UPLOAD_BYTES = 50 * MiB
MAX_ROWS = 200_000  # data rows in one import (the header is not counted)
TEMPLATE_COLUMNS = 13  # the widest import template (customers)
MAX_CELL_CHARS = 32_767  # Excel's own limit for one cell
MAX_COLUMNS = 16_384  # Excel's last column, XFD
MAX_SHEET_ROW = 1_048_576  # Excel's last row

# The zip. Excel and WPS write 9-15 members, a workbook with many sheets, pictures and comments a few
# hundred; a central directory entry is 46 bytes plus its name and extras.
ZIP_MAX_MEMBERS = 1_000
ZIP_MAX_DIRECTORY_BYTES = 1 * MiB
# Declared (and counted) inflated sizes. Sheet: 422 MB measured (above), rounded up. Shared strings:
# 126 MB measured, doubled. Any other XML part (workbook, relationships, styles, theme) is kilobytes;
# a workbook bloated with 64,000 copied cell styles (Excel's maximum) has a ~7 MB styles.xml.
SHEET_MAX_BYTES = 512 * MiB
SHARED_STRINGS_MAX_BYTES = 256 * MiB
PART_MAX_BYTES = 16 * MiB
TOTAL_MAX_BYTES = 1024 * MiB  # pictures and other binary members are never inflated, only counted
# Ratio inflated:compressed. Measured 2:1 to 11:1; the bombs of the report are 400:1 to 1000:1.
# Small members (a few rows, a styles part) compress further legitimately, so only large ones count.
ZIP_MAX_RATIO = 100
ZIP_RATIO_FROM_BYTES = 1 * MiB
# Kept in memory while reading: the shared strings, as UTF-8 in one buffer. Count: one distinct text
# per cell of a full sheet of the widest template (1.1 million measured). Text: 108 MB measured in the
# 70 MB file; Chinese text compresses at least 2:1, so 50 MB cannot hold much more.
SHARED_STRINGS_MAX_COUNT = (MAX_ROWS + 1) * TEMPLATE_COLUMNS
SHARED_STRINGS_MAX_TEXT_BYTES = 128 * MiB
# One row, or one shared string, as XML: real rows are 0.2-3 KB; a cell of 32,767 Chinese characters
# as openpyxl writes them is 262 KB. Bounds what one row can cost in memory (~40 MB at worst).
UNIT_MAX_BYTES = 512 * KiB
# Between two rows (or two strings) a real file has nothing; before the first row only the sheet's
# properties, views and column widths (a few KB). Bounds what unknown elements can cost (~20 MB).
GAP_MAX_BYTES = 256 * KiB
# CSV: one record (a row, possibly over several lines) holds 13 cells of at most 32,767 characters.
CSV_MAX_RECORD_CHARS = 1 * MiB
# Cells in the whole sheet, blank ones included: a full sheet with 50 columns (the template's 13 and
# as many again of the user's own, twice). Bounds the reading time (~2 s a million cells).
MAX_SHEET_CELLS = (MAX_ROWS + 1) * 50

CHUNK = 64 * 1024
_MAIN_NS = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
_REL_NS = "{http://schemas.openxmlformats.org/package/2006/relationships}"
_DOC_REL_ID = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}id"
_ROW, _CELL, _SHEET_DATA = _MAIN_NS + "row", _MAIN_NS + "c", _MAIN_NS + "sheetData"
_SI, _T, _R, _V, _IS = _MAIN_NS + "si", _MAIN_NS + "t", _MAIN_NS + "r", _MAIN_NS + "v", _MAIN_NS + "is"


def abnormal(detail: str) -> UserError:
    return UserError(f"文件异常:{detail},可能是损坏或恶意构造的文件,请另存为新的 .xlsx 后重试。")


def too_many_rows() -> UserError:
    return UserError(f"单次最多导入 {MAX_ROWS} 行,请拆分文件后分批导入。")


def _mb(n: int) -> str:
    return f"{n // MiB} MB" if n >= MiB else f"{n // KiB} KB"


# ----- the zip -------------------------------------------------------------------------------------

def _central_directory(fh: IO[bytes], size: int) -> tuple[int, int]:
    """(members, bytes) of the central directory, from the end record, zip64 included."""
    tail_len = min(size, 22 + 0xFFFF)
    fh.seek(size - tail_len)
    tail = fh.read(tail_len)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + 22 > len(tail):
        raise UserError("文件已损坏,无法作为 Excel 文件读取。")
    members, directory, offset = struct.unpack("<HLL", tail[at + 10:at + 20])
    if members == 0xFFFF or 0xFFFFFFFF in (directory, offset):
        locator = tail[at - 20:at] if at >= 20 else b""
        if locator[:4] != b"PK\x06\x07":
            raise UserError("文件已损坏,无法作为 Excel 文件读取。")
        (record_at,) = struct.unpack("<Q", locator[8:16])
        if record_at > size - 56:
            raise UserError("文件已损坏,无法作为 Excel 文件读取。")
        fh.seek(record_at)
        record = fh.read(56)
        if record[:4] != b"PK\x06\x06":
            raise UserError("文件已损坏,无法作为 Excel 文件读取。")
        members, directory = struct.unpack("<QQ", record[32:48])
    return members, directory


def _member_limit(name: str) -> int:
    lower = name.lower()
    if not lower.endswith((".xml", ".rels")):
        return TOTAL_MAX_BYTES
    if "/worksheets/" in f"/{lower}":
        return SHEET_MAX_BYTES
    if posixpath.basename(lower).startswith("sharedstrings"):
        return SHARED_STRINGS_MAX_BYTES
    return PART_MAX_BYTES


def open_package(path: str) -> zipfile.ZipFile:
    """The upload as a zip, once its directory is within the limits (nothing inflated yet)."""
    with open(path, "rb") as fh:
        size = fh.seek(0, 2)
        members, directory = _central_directory(fh, size)
    if members > ZIP_MAX_MEMBERS or directory > ZIP_MAX_DIRECTORY_BYTES:
        raise abnormal(f"压缩包内有 {members} 个文件(Excel 文件通常不到 20 个,上限 {ZIP_MAX_MEMBERS} 个)")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError):
        raise UserError("文件已损坏,无法作为 Excel 文件读取。") from None
    try:
        _check_members(archive)
    except BaseException:
        archive.close()
        raise
    return archive


def _check_members(archive: zipfile.ZipFile) -> None:
    infos = archive.infolist()
    if len(infos) > ZIP_MAX_MEMBERS:
        raise abnormal(f"压缩包内有 {len(infos)} 个文件(上限 {ZIP_MAX_MEMBERS} 个)")
    seen: set[str] = set()
    total = 0
    for info in infos:
        name = info.filename
        parts = name.split("/")
        if (not name or len(name) > 255 or name.startswith("/") or "\\" in name or "\x00" in name
                or ".." in parts or ":" in parts[0]):
            raise abnormal("压缩包内有不合规的文件路径")
        if name.lower() in seen:
            raise abnormal(f"压缩包内有重名的文件 {name}")
        seen.add(name.lower())
        if info.flag_bits & 0x1:
            raise UserError("文件已加密,无法读取。请在 Excel 中取消密码保护后另存为 .xlsx 再上传。")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise abnormal(f"{name} 使用了 Excel 不使用的压缩方式")
        limit = _member_limit(name)
        if info.file_size > limit:
            raise abnormal(f"{name} 解压后为 {_mb(info.file_size)},超过 {_mb(limit)} 的上限")
        if (info.file_size > ZIP_RATIO_FROM_BYTES
                and info.file_size > ZIP_MAX_RATIO * max(info.compress_size, 1)):
            raise abnormal(f"{name} 的压缩比超过 {ZIP_MAX_RATIO}:1(解压后为 {_mb(info.file_size)})")
        total += info.file_size
        if total > TOTAL_MAX_BYTES:
            raise abnormal(f"解压后超过 {_mb(TOTAL_MAX_BYTES)}")
    if "[content_types].xml" not in seen:
        raise UserError("压缩包里不是 Excel 表格,请上传 .xlsx 文件本身(不要压缩或打包)。")


def _inflate(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> Iterator[bytes]:
    """The member's bytes, counted as they come: never more than declared, and all of them."""
    total = 0
    try:
        with archive.open(info) as fh:
            while chunk := fh.read(CHUNK):
                total += len(chunk)
                yield chunk
    except (zipfile.BadZipFile, EOFError, zlib.error, OSError, NotImplementedError, ValueError):
        raise abnormal(f"{info.filename} 的实际内容与声明的大小或校验值不符") from None
    if total != info.file_size:
        raise abnormal(f"{info.filename} 的实际内容与声明的大小不符")


# ----- XML parts, streamed -------------------------------------------------------------------------

def _elements(archive: zipfile.ZipFile, name: str, units: tuple[str, ...],
              stop: str | None = None) -> Iterator[Any]:
    """Each finished ``units`` element of an XML part, streamed; it is freed once the caller is done.

    Nothing else of the part stays in memory: everything before a unit is dropped when the unit is
    done, a unit may not pass ``UNIT_MAX_BYTES`` nor a stretch between units ``GAP_MAX_BYTES``, and
    reading ends at the end of ``stop`` (the worksheet's rows: nothing after them is needed)."""
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise abnormal(f"缺少 {name}") from None
    parser = etree.XMLPullParser(
        events=("start", "end"), tag=(*units, stop) if stop else units, resolve_entities=False,
        no_network=True, load_dtd=False, huge_tree=False, remove_comments=True, remove_pis=True)
    fed = 0
    unit_from: int | None = None  # bytes fed when the open unit began
    last_end = 0
    for chunk in _inflate(archive, info):
        if fed == 0:
            _check_prolog(chunk, name)
        try:
            parser.feed(chunk)
        except etree.XMLSyntaxError:
            raise abnormal(f"{name} 不是有效的 XML") from None
        before = fed
        fed += len(chunk)
        for event, element in parser.read_events():
            if element.tag == stop:
                if event == "end":
                    return
                continue
            if event == "start":
                unit_from = before
                continue
            yield element
            element.clear(keep_tail=False)
            parent = element.getparent()
            if parent is not None:
                while element.getprevious() is not None:
                    del parent[0]
            unit_from, last_end = None, fed
        if unit_from is not None and fed - unit_from > UNIT_MAX_BYTES + CHUNK:
            raise abnormal(f"{name} 中有一行或一个单元格的内容超过 {_mb(UNIT_MAX_BYTES)}")
        if unit_from is None and fed - last_end > GAP_MAX_BYTES + CHUNK:
            raise abnormal(f"{name} 中有超过 {_mb(GAP_MAX_BYTES)} 的无法识别的内容")
    try:
        parser.close()
    except etree.XMLSyntaxError:
        raise abnormal(f"{name} 不是完整的 XML") from None


_PROLOG_ITEM = re.compile(rb"\s*(?:<\?.*?\?>|<!--.*?-->)", re.DOTALL)


def _check_prolog(head: bytes, name: str) -> None:
    """The part starts, within its first chunk, with its root element, after at most an XML
    declaration and comments: a DTD (where entities are declared, "billion laughs") can only come
    before the root, so none gets past this, whatever the parser would do with it."""
    at = len(codecs.BOM_UTF8) if head.startswith(codecs.BOM_UTF8) else 0
    while match := _PROLOG_ITEM.match(head, at):
        at = match.end()
    rest = head[at:].lstrip()
    if rest[:9].upper() in (b"<!DOCTYPE", b"<!ENTITY "):
        raise abnormal(f"{name} 含有 DTD(实体声明)")
    if not re.match(rb"<[A-Za-z_]", rest):
        raise abnormal(f"{name} 不是有效的 UTF-8 XML")


def _relationships(archive: zipfile.ZipFile, name: str) -> dict[str, tuple[str, str]]:
    """Id → (type, target path inside the package) of a ``.rels`` part."""
    base = posixpath.dirname(posixpath.dirname(name))  # "xl/_rels/workbook.xml.rels" → "xl"
    found: dict[str, tuple[str, str]] = {}
    for rel in _elements(archive, name, (_REL_NS + "Relationship",)):
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
    for element in _elements(archive, main, (_MAIN_NS + "sheet", _MAIN_NS + "workbookPr",
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
    for element in _elements(archive, name, units):
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
            raise abnormal(f"共享文本超过 {_mb(SHARED_STRINGS_MAX_TEXT_BYTES)}")
        self.ends.append(len(self.data))

    def __getitem__(self, index: int) -> str:
        start = self.ends[index - 1] if index > 0 else 0
        return self.data[start:self.ends[index]].decode("utf-8", "surrogatepass")

    def __len__(self) -> int:
        return len(self.ends)


def too_many_cells() -> UserError:
    return UserError(f"表格的单元格超过 {MAX_SHEET_CELLS} 个(含空白单元格),请只保留需要导入的列和行后重试。")


def cell_too_long(row: int | None) -> UserError:
    where = f"第 {row} 行有" if row else "有"
    return UserError(f"{where}单元格超过 {MAX_CELL_CHARS} 个字符(Excel 单元格的上限),请检查文件。")


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
        for element in _elements(archive, name, (_SI,)):
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
        for row in _elements(archive, book.sheet, (_ROW,), stop=_SHEET_DATA):
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
        for chunk in _inflate(archive, sheet):
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
        for chunk in _inflate(archive, sheet):
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
                raise abnormal(f"{sheet.filename} 中有一行的内容超过 {_mb(UNIT_MAX_BYTES)}")
        return count


# ----- CSV -------------------------------------------------------------------------------------------

def csv_encoding(path: str) -> str | None:
    """The encoding a CSV upload is read with: UTF-8 (with or without BOM) or GB18030; None when the
    start of the file is neither (or binary)."""
    with open(path, "rb") as fh:
        sample = fh.read(256 * 1024)
    if b"\x00" in sample:
        return None  # binary (or UTF-16): not a CSV we read
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        decoder.decode(sample, final=False)  # a character cut at the sample's end is fine
        return "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        codecs.getincrementaldecoder("gb18030")().decode(sample, final=False)
        return "gb18030"
    except UnicodeDecodeError:
        return None


def check_csv_text(path: str, encoding: str) -> None:
    """The whole file decodes and holds no NUL: found at upload, not after checking the rows before."""
    decoder = codecs.getincrementaldecoder(encoding)()
    line = 1
    with open(path, "rb") as fh:
        while chunk := fh.read(MiB):
            nul = chunk.find(b"\x00")
            if nul >= 0:
                raise UserError(f"CSV 文件第 {line + chunk.count(b'\n', 0, nul)} 行含有空字符(NUL),"
                                "不是有效的文本文件,请用 Excel 另存为 CSV 后重试。")
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                near = line + chunk.count(b"\n", 0, max(exc.start, 0))
                raise UserError(f"CSV 文件第 {near} 行附近的编码无法识别(整个文件应为 UTF-8 或 GB18030),"
                                "请在 Excel 中另存为“CSV UTF-8(逗号分隔)”后重试。") from None
            line += chunk.count(b"\n")
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise UserError("CSV 文件末尾的编码无法识别(整个文件应为 UTF-8 或 GB18030),"
                            "请在 Excel 中另存为“CSV UTF-8(逗号分隔)”后重试。") from None


@dataclass
class _Record:
    chars: int = 0  # of the record being read
    line: int = 0  # lines read so far


def csv_rows(path: str) -> Iterator[list[str]]:
    """CSV records; none may pass ``CSV_MAX_RECORD_CHARS``, a field ``MAX_CELL_CHARS``, nor hold NUL."""
    encoding = csv_encoding(path) or "utf-8"
    state = _Record()

    def lines(fh: IO[str]) -> Iterator[str]:
        while True:
            line = fh.readline(CSV_MAX_RECORD_CHARS + 1)
            if not line:
                return
            state.line += 1
            state.chars += len(line)
            if state.chars > CSV_MAX_RECORD_CHARS:
                raise UserError(f"CSV 文件第 {state.line} 行附近的一行超过 {CSV_MAX_RECORD_CHARS} 个字符"
                                "(可能缺少换行或引号不配对),请用 Excel 另存为 CSV 后重试。")
            if "\x00" in line:
                raise UserError(f"CSV 文件第 {state.line} 行含有空字符(NUL),不是有效的文本文件,"
                                "请用 Excel 另存为 CSV 后重试。")
            yield line

    with open(path, encoding=encoding, newline="", errors="strict") as fh:
        reader = csv.reader(lines(fh))
        cells = 0
        try:
            for record in reader:
                state.chars = 0
                cells += len(record)
                if cells > MAX_SHEET_CELLS:
                    raise too_many_cells()
                if len(record) > MAX_COLUMNS:
                    raise UserError(f"CSV 文件第 {state.line} 行超过 {MAX_COLUMNS} 列,请检查文件。")
                if any(len(value) > MAX_CELL_CHARS for value in record):
                    raise cell_too_long(state.line)
                yield record
        except UnicodeDecodeError:
            raise UserError("CSV 文件编码无法识别,请另存为 UTF-8 或 GB18030(Excel 中的“CSV(逗号分隔)”)。") from None
        except csv.Error as exc:
            if "field larger than field limit" in str(exc):
                raise cell_too_long(state.line) from None
            raise UserError(f"CSV 文件第 {state.line} 行格式有误(例如引号不配对),请用 Excel 另存为 CSV 后重试。") from None


def count_lines(path: str) -> int:
    count = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(MiB):
            count += chunk.count(b"\n")
    return count

