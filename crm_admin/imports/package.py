"""The .xlsx package: a zip of XML parts, opened and streamed within the limits of ``spreadsheet.py``.

``open_package`` reads the zip's end record before anything parses the central directory, then checks
each member (name, encryption, compression method, declared size, ratio); ``inflate`` counts the bytes
as they come; ``elements`` streams an XML part through lxml's pull parser without DTDs or entities.
"""

from __future__ import annotations

import codecs
import posixpath
import re
import struct
import zipfile
import zlib
from collections.abc import Iterator
from typing import IO, Any

from lxml import etree

from crm_admin.core.errors import UserError
from crm_admin.imports.spreadsheet import (
    CHUNK,
    GAP_MAX_BYTES,
    PART_MAX_BYTES,
    SHARED_STRINGS_MAX_BYTES,
    SHEET_MAX_BYTES,
    TOTAL_MAX_BYTES,
    UNIT_MAX_BYTES,
    ZIP_MAX_DIRECTORY_BYTES,
    ZIP_MAX_MEMBERS,
    ZIP_MAX_RATIO,
    ZIP_RATIO_FROM_BYTES,
    abnormal,
    size_text,
)

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
            raise abnormal(f"{name} 解压后为 {size_text(info.file_size)},超过 {size_text(limit)} 的上限")
        if (info.file_size > ZIP_RATIO_FROM_BYTES
                and info.file_size > ZIP_MAX_RATIO * max(info.compress_size, 1)):
            raise abnormal(f"{name} 的压缩比超过 {ZIP_MAX_RATIO}:1(解压后为 {size_text(info.file_size)})")
        total += info.file_size
        if total > TOTAL_MAX_BYTES:
            raise abnormal(f"解压后超过 {size_text(TOTAL_MAX_BYTES)}")
    if "[content_types].xml" not in seen:
        raise UserError("压缩包里不是 Excel 表格,请上传 .xlsx 文件本身(不要压缩或打包)。")


def inflate(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> Iterator[bytes]:
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

def elements(archive: zipfile.ZipFile, name: str, units: tuple[str, ...],
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
    for chunk in inflate(archive, info):
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
            raise abnormal(f"{name} 中有一行或一个单元格的内容超过 {size_text(UNIT_MAX_BYTES)}")
        if unit_from is None and fed - last_end > GAP_MAX_BYTES + CHUNK:
            raise abnormal(f"{name} 中有超过 {size_text(GAP_MAX_BYTES)} 的无法识别的内容")
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

