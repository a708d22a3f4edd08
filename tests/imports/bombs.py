"""Crafted upload files: zip and XML bombs, lying zips, CSV bombs (built in memory, in well under a second each).

A zip is written here by hand, so that a member can say what it likes about its size and a deflate
stream of N repetitions costs one compressed block: after a full flush deflate forgets what came
before, so the block's compressed bytes can simply be repeated.
"""

from __future__ import annotations

import dataclasses
import functools
import struct
import zlib
from dataclasses import dataclass

NS = b'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
REL = b"http://schemas.openxmlformats.org/officeDocument/2006/relationships"
CONTENT_TYPES = (
    b'<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/'
    b'content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.'
    b'relationships+xml"/><Default Extension="xml" ContentType="application/xml"/>'
    b'<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.'
    b'spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/'
    b'vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/><Override PartName="/xl/sharedStrings.xml" '
    b'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/>'
    b'<Override PartName="/xl/styles.xml" ContentType="application/vnd.openxmlformats-officedocument.'
    b'spreadsheetml.styles+xml"/></Types>')
PACKAGE_RELS = (
    b'<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/'
    b'2006/relationships"><Relationship Id="rId1" Type="' + REL + b'/officeDocument" Target="xl/workbook.xml"/>'
    b'</Relationships>')
WORKBOOK = (b'<?xml version="1.0" encoding="UTF-8"?><workbook ' + NS + b' xmlns:r="' + REL + b'"><sheets>'
            b'<sheet name="S" sheetId="1" r:id="rId1"/></sheets></workbook>')
WORKBOOK_RELS = (
    b'<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/'
    b'2006/relationships"><Relationship Id="rId1" Type="' + REL + b'/worksheet" Target="worksheets/sheet1.xml"/>'
    b'<Relationship Id="rId2" Type="' + REL + b'/sharedStrings" Target="sharedStrings.xml"/>'
    b'<Relationship Id="rId3" Type="' + REL + b'/styles" Target="styles.xml"/></Relationships>')
STYLES = (b'<styleSheet ' + NS + b'><numFmts count="1"><numFmt numFmtId="164" formatCode="yyyy/m/d"/></numFmts>'
          b'<cellXfs count="2"><xf numFmtId="0"/><xf numFmtId="164"/></cellXfs></styleSheet>')
HEADER_ROW = '<row r="1"><c r="A1" t="inlineStr"><is><t>客户名称</t></is></c></row>'.encode()


def sheet(rows: bytes = b"", header: bytes = HEADER_ROW) -> bytes:
    return b'<?xml version="1.0" encoding="UTF-8"?><worksheet ' + NS + b"><sheetData>" + header + rows + \
        b"</sheetData></worksheet>"


def shared_strings(items: bytes = b"") -> bytes:
    return b"<sst " + NS + b">" + items + b"</sst>"


@dataclass
class Member:
    name: str
    data: bytes  # as stored in the zip: raw deflate (method 8) or the bytes themselves (method 0)
    size: int  # the uncompressed size the zip declares
    crc: int
    method: int = 8
    flags: int = 0


def member(name: str, content: bytes, method: int = 8) -> Member:
    if method == 0:
        return Member(name, content, len(content), zlib.crc32(content), 0)
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    return Member(name, packer.compress(content) + packer.flush(), len(content), zlib.crc32(content))


def repeated(name: str, head: bytes, block: bytes, times: int, tail: bytes, declared: int | None = None) -> Member:
    """``head + block * times + tail`` deflated, without ever holding the inflated bytes."""
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = packer.compress(head) + packer.flush(zlib.Z_FULL_FLUSH)
    segment = packer.compress(block) + packer.flush(zlib.Z_FULL_FLUSH)
    assert segment == packer.compress(block) + packer.flush(zlib.Z_FULL_FLUSH), "the same after every flush"
    last = packer.compress(tail) + packer.flush()
    crc = zlib.crc32(head)
    for _ in range(times):
        crc = zlib.crc32(block, crc)
    crc = zlib.crc32(tail, crc)
    size = len(head) + len(block) * times + len(tail)
    return Member(name, first + segment * times + last, size if declared is None else declared, crc)


def zip_bytes(members: list[Member]) -> bytes:
    out, directory = bytearray(), bytearray()
    for m in members:
        name = m.name.encode("utf-8")
        offset = len(out)
        out += struct.pack("<4sHHHHHLLLHH", b"PK\x03\x04", 20, m.flags | 0x800, m.method, 0, 0x21, m.crc,
                           len(m.data), m.size, len(name), 0) + name + m.data
        directory += struct.pack("<4sHHHHHHLLLHHHHHLL", b"PK\x01\x02", 20, 20, m.flags | 0x800, m.method, 0,
                                 0x21, m.crc, len(m.data), m.size, len(name), 0, 0, 0, 0, 0, offset) + name
    end = struct.pack("<4sHHHHLLH", b"PK\x05\x06", 0, 0, len(members), len(members), len(directory), len(out), 0)
    return bytes(out + directory + end)


def workbook(sheet_member: Member | None = None, strings: Member | None = None,
             extra: list[Member] | None = None) -> bytes:
    """A minimal .xlsx that Excel opens, with the given sheet and shared strings parts."""
    return zip_bytes([
        member("[Content_Types].xml", CONTENT_TYPES), member("_rels/.rels", PACKAGE_RELS),
        member("xl/workbook.xml", WORKBOOK), member("xl/_rels/workbook.xml.rels", WORKBOOK_RELS),
        member("xl/styles.xml", STYLES),
        sheet_member or member("xl/worksheets/sheet1.xml", sheet()),
        strings or member("xl/sharedStrings.xml", shared_strings()),
        *(extra or []),
    ])


# ----- the bombs ---------------------------------------------------------------------------------------

SI = b"<si><t>x</t></si>"


@functools.cache
def _twenty_million_strings() -> Member:
    return repeated("xl/sharedStrings.xml", b"<sst " + NS + b">", SI * 60_000, 334, b"</sst>")


def shared_strings_20_million() -> bytes:
    """The file of the report: 0.8 MB whose sharedStrings.xml inflates to 340 MB (20 million entries)."""
    return workbook(strings=_twenty_million_strings())


def shared_strings_lying() -> bytes:
    """The same 340 MB of entries, but the zip says the part is 1 MB (and the ratio looks harmless)."""
    return workbook(strings=dataclasses.replace(_twenty_million_strings(), size=1_000_000))


def rows_millions() -> bytes:
    """Five million rows of one cell: 280 MB of sheet in a 0.3 MB file."""
    row = b'<row><c t="inlineStr"><is><t>x</t></is></c></row>'
    return workbook(sheet_member=repeated("xl/worksheets/sheet1.xml", sheet()[:-len(b"</sheetData></worksheet>")],
                                          row * 20_000, 250, b"</sheetData></worksheet>"))


def rows_past_cap(count: int = 300_000) -> bytes:
    """300,000 distinct rows, compressed like a real sheet (about 12:1): past the row cap, not a bomb."""
    rows = b"".join(b'<row r="%d"><c r="A%d" t="inlineStr"><is><t>c%d</t></is></c></row>' % (i, i, i)
                    for i in range(2, count + 2))
    packer = zlib.compressobj(1, zlib.DEFLATED, -15)
    content = sheet(rows)
    return workbook(sheet_member=Member("xl/worksheets/sheet1.xml", packer.compress(content) + packer.flush(),
                                        len(content), zlib.crc32(content)))


def one_huge_cell() -> bytes:
    """One cell of 100 million characters (100 MB of sheet in a 0.1 MB file)."""
    head = sheet()[:-len(b"</sheetData></worksheet>")] + b'<row r="2"><c r="A2" t="inlineStr"><is><t>'
    return workbook(sheet_member=repeated("xl/worksheets/sheet1.xml", head, b"A" * 1_000_000, 100,
                                          b"</t></is></c></row></sheetData></worksheet>"))


def one_huge_cell_stored() -> bytes:
    """One 3 MB cell in a part stored without compression: no ratio gives it away."""
    cell = b'<row r="2"><c r="A2" t="inlineStr"><is><t>' + b"A" * 3_000_000 + b"</t></is></c></row>"
    return workbook(sheet_member=member("xl/worksheets/sheet1.xml", sheet(cell), method=0))


def one_huge_shared_string() -> bytes:
    """One 3 MB shared string, stored without compression."""
    return workbook(strings=member("xl/sharedStrings.xml", shared_strings(b"<si><t>" + b"B" * 3_000_000 +
                                                                          b"</t></si>"), method=0))


def cell_past_excel_limit() -> bytes:
    """A cell of 40,000 characters: more than Excel itself allows (32,767)."""
    cell = b'<row r="2"><c r="A2" t="inlineStr"><is><t>' + "长".encode() * 40_000 + b"</t></is></c></row>"
    return workbook(sheet_member=member("xl/worksheets/sheet1.xml", sheet(cell)))


def junk_between_rows() -> bytes:
    """Three million empty elements between two rows, which a parser would keep (stored: 9 MB)."""
    rows = '<row r="2"><c r="A2" t="inlineStr"><is><t>甲</t></is></c></row>'.encode() + b"<x/>" * 3_000_000
    return workbook(sheet_member=member("xl/worksheets/sheet1.xml", sheet(rows), method=0))


def thousands_of_members() -> bytes:
    return workbook(extra=[member(f"xl/media/image{i}.bin", b"x") for i in range(5_000)])


def nested_zip() -> bytes:
    """A zip holding an .xlsx (itself a bomb) instead of being one."""
    return zip_bytes([member("客户.xlsx", shared_strings_20_million(), method=0)])


def encrypted_member() -> bytes:
    content = sheet()
    m = member("xl/worksheets/sheet1.xml", content)
    m.flags = 0x1
    return workbook(sheet_member=m)


def encrypted_office_file() -> bytes:
    """What Excel saves with a password: an OLE compound file holding an "EncryptedPackage" stream."""
    return b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 1000 + "EncryptedPackage".encode("utf-16-le") + \
        b"\x00" * 1000


def billion_laughs() -> bytes:
    entities = b"".join(b'<!ENTITY lol%d "%s">' % (i, b"&lol%d;" % (i - 1) * 10) for i in range(1, 10))
    doc = (b'<?xml version="1.0"?><!DOCTYPE sst [<!ENTITY lol0 "lol">' + entities + b"]>"
           b"<sst " + NS + b"><si><t>&lol9;</t></si></sst>")
    return workbook(strings=member("xl/sharedStrings.xml", doc))


def path_traversal() -> bytes:
    return workbook(extra=[member("../../../etc/cron.d/evil.xml", b"<x/>")])


def duplicate_members() -> bytes:
    return workbook(extra=[member("xl/worksheets/sheet1.xml", sheet(b'<row r="2"><c r="A2"><v>1</v></c></row>'))])


def row_number_past_excel() -> bytes:
    """A row numbered 999,999,999: a reader that fills the gap with empty rows never finishes."""
    return workbook(sheet_member=member("xl/worksheets/sheet1.xml", sheet(
        b'<row r="999999999"><c r="A999999999" t="inlineStr"><is><t>x</t></is></c></row>')))


# ----- CSV -----------------------------------------------------------------------------------------

def csv_one_enormous_line() -> bytes:
    return "客户名称\r\n".encode() + b"a," * 3_000_000


def csv_huge_field() -> bytes:
    return "客户名称\r\n\"".encode() + "长".encode() * 100_000 + b'"\r\n'


def csv_nul_bytes() -> bytes:
    return "客户名称\r\n".encode() + "甲公司\r\n".encode() * 40_000 + b"\x00\x00\r\n"


def csv_bad_encoding() -> bytes:
    return "客户名称\r\n".encode() + "甲公司\r\n".encode() * 40_000 + b"\xff\xfe\xfd\r\n"


def csv_rows_past_cap() -> bytes:
    return "客户名称\n".encode() + b"".join(b"c%d\n" % i for i in range(1_000_000))
