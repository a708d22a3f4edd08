"""Reading an uploaded spreadsheet (.xlsx or CSV) within fixed limits, whatever the file claims.

An .xlsx file is a zip of XML parts, and a small zip can inflate enormously: a 0.83 MB upload whose
``xl/sharedStrings.xml`` inflates to 340 MB (20 million entries) cost openpyxl 133 s of CPU and
1.8 GB of memory, because openpyxl keeps every shared string, every style and every element it does
not know in memory, even in read-only mode. So uploads are not read with openpyxl here:

1. ``package.open_package`` reads the zip's end record before anything parses the central directory, then
   checks each member: name (no absolute paths, ``..``, duplicates), no encryption, deflate or
   stored only, declared size per kind of part, total size, and the compression ratio.
2. ``xlsx.xlsx_rows`` streams the parts it needs (relationships, workbook, styles, shared strings, the
   first worksheet) through lxml's pull parser: the bytes are counted as they are inflated (a zip can
   lie about sizes), no DTD is accepted and entities are never expanded, each row or shared string
   is dropped from the tree once read, and no row, string or stretch between them may pass a size
   limit, so memory stays bounded by the limits below and not by what the file says.
3. ``csv_rows`` reads CSV with a bound on every record and field, refusing NUL bytes.

This module holds every limit and reads CSV; ``package.py`` opens the zip and streams its XML parts,
``xlsx.py`` reads the workbook. Every refusal is a ``UserError`` with a message in Chinese that says what is wrong with the file.
"""

from __future__ import annotations

import codecs
import csv
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

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


def abnormal(detail: str) -> UserError:
    return UserError(f"文件异常:{detail},可能是损坏或恶意构造的文件,请另存为新的 .xlsx 后重试。")


def too_many_rows() -> UserError:
    return UserError(f"单次最多导入 {MAX_ROWS} 行,请拆分文件后分批导入。")


def size_text(n: int) -> str:
    return f"{n // MiB} MB" if n >= MiB else f"{n // KiB} KB"


def too_many_cells() -> UserError:
    return UserError(f"表格的单元格超过 {MAX_SHEET_CELLS} 个(含空白单元格),请只保留需要导入的列和行后重试。")


def cell_too_long(row: int | None) -> UserError:
    where = f"第 {row} 行有" if row else "有"
    return UserError(f"{where}单元格超过 {MAX_CELL_CHARS} 个字符(Excel 单元格的上限),请检查文件。")


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

