"""MariaDB/MySQL backups: mariadb-dump's SQL followed by the manifest, as two SQL comment lines.

    <mariadb-dump --single-transaction output, ending with its own "-- Dump completed" line>
    -- crm-admin backup manifest: {"kind":"mysql","revision":"0007","tables":{…},"sha256":"…",…}
    -- crm-admin backup end: sha256=<SHA-256 of the manifest line>

``sha256`` and ``content_bytes`` cover every byte before the manifest line. The row counts are taken
from the dump itself (the rows of every INSERT are counted as the dump streams through), so they
describe exactly the snapshot in the file, however busy the server was. Being comments, the two lines
keep the file plain SQL for the mariadb client. A file cut anywhere loses the end line or no longer
matches its checksum; a dump cut between two statements has neither mariadb-dump's completion line nor
the manifest.

Restore: verify the file → the mariadb client loads it into a staging database
``<target>__restore_<random>`` (hashing the bytes once more as they go) → that database must hold
exactly the manifest's tables, row counts and revision → an older revision is upgraded there → one
``RENAME TABLE`` statement moves the target's tables into ``<target>__before_<time>`` and the staged
ones into the target (MariaDB runs a multi-table RENAME as one atomic operation) → the previous tables
are dropped. Every failure before the RENAME leaves the target as it was; the staging database is
dropped whatever happens. Creating the two helper databases needs the CREATE and DROP privileges on
them (e.g. ``GRANT ALL ON `crm\\_\\_%`.* TO 'crm'@'%'``) or an administrator account.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from sqlalchemy import Connection, create_engine, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from crm_admin.backup.manifest import (
    CHUNK,
    BackupError,
    BackupInfo,
    Content,
    Manifest,
    Writable,
    check_revision,
    checked_message,
    open_content,
)
from crm_admin.backup.sqlite import compare_counts
from crm_admin.migrate import upgrade

COMPLETED = b"-- Dump completed"
MANIFEST_PREFIX = b"-- crm-admin backup manifest: "
END_PREFIX = b"-- crm-admin backup end: sha256="
_TAIL = 256 * 1024  # the manifest lines are far shorter; the verifier looks for them in this tail
_MAX_MANIFEST = 64 * 1024
_STRING = re.compile(rb"'[^'\\]*(?:\\.[^'\\]*)*'", re.S)
_CREATE = re.compile(rb"CREATE TABLE `((?:[^`]|``)+)`")
_INSERT = re.compile(rb"INSERT INTO `((?:[^`]|``)+)` VALUES")


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# --- the client programs ---------------------------------------------------------------------------

def client(*names: str) -> str:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    raise BackupError(
        f"找不到 MariaDB/MySQL 客户端程序({' 或 '.join(names)})。"
        "请先安装,例如 Debian/Ubuntu:apt install mariadb-client"
    )


@contextmanager
def defaults_file(url: URL) -> Iterator[str]:
    """Credentials go through an owner-only options file, never the command line (visible in ps)."""
    lines = ["[client]"]
    if url.username:
        lines.append(f"user={url.username}")
    if url.password:
        escaped = str(url.password).replace("\\", "\\\\").replace('"', '\\"')
        lines.append(f'password="{escaped}"')
    if url.host:
        lines.append(f"host={url.host}")
    if url.port:
        lines.append(f"port={url.port}")
    socket = url.query.get("unix_socket")
    if socket:
        lines.append(f"socket={socket if isinstance(socket, str) else socket[0]}")
    lines.append("default-character-set=utf8mb4")
    fd, path = tempfile.mkstemp(prefix="crm-my-", suffix=".cnf")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")
        yield path
    finally:
        os.unlink(path)


def _last_error_line(stderr: IO[bytes]) -> str:
    stderr.seek(0)
    lines = [ln for ln in stderr.read().decode("utf-8", "replace").splitlines() if ln.strip()]
    return lines[-1].strip() if lines else ""


# --- backup ----------------------------------------------------------------------------------------

class RowCounter:
    """Counts the rows mariadb-dump writes for each table, from its output, line by line (lines given
    without their newline).

    MariaDB 10.x writes ``INSERT INTO `t` VALUES`` on a line of its own and then one row per line, each
    starting with ``(`` and ending in ``),`` or ``);`` (every newline inside a value is escaped): one
    line, one row. Other dumps put a whole INSERT on one line; there every ``(`` left once the string
    literals are taken out starts a row (numbers, NULLs and --hex-blob values hold no parentheses).
    """

    def __init__(self) -> None:
        self.tables: dict[str, int] = {}
        self.revision: str | None = None
        self.server = ""
        self.last_line = b""
        self._inserting: str | None = None
        self._row_per_line = False

    def feed(self, line: bytes) -> None:
        self.last_line = line
        if self._inserting is not None:
            if self._row_per_line and line[:1] == b"(":
                self.tables[self._inserting] += 1
                if self._inserting == "alembic_version":
                    self._read_revision(line)
                if line.endswith(b";"):
                    self._inserting = None
                return
            self._count_values(line)
            return
        if line.startswith(b"CREATE TABLE `"):
            match = _CREATE.match(line)
            if match:
                self.tables.setdefault(_name(match.group(1)), 0)
        elif line.startswith(b"INSERT INTO `"):
            match = _INSERT.match(line)
            if not match:
                raise BackupError("无法解析 mariadb-dump 的输出(INSERT 语句格式未知),备份未完成。")
            self._inserting = _name(match.group(1))
            self.tables.setdefault(self._inserting, 0)
            rest = line[match.end():]
            self._row_per_line = not rest.strip()
            if rest.strip():
                self._count_values(rest)
        elif line.startswith(b"-- Server version"):
            self.server = line.split(b"version", 1)[1].strip().decode("utf-8", "replace")

    def _count_values(self, values: bytes) -> None:
        assert self._inserting is not None
        bare = _STRING.sub(b"", values)
        self.tables[self._inserting] += bare.count(b"(")
        if self._inserting == "alembic_version":
            self._read_revision(values)
        if bare.rstrip().endswith(b";"):
            self._inserting = None

    def _read_revision(self, values: bytes) -> None:
        for literal in _STRING.findall(values):
            self.revision = literal[1:-1].decode("utf-8", "replace")


def _name(quoted: bytes) -> str:
    return quoted.replace(b"``", b"`").decode("utf-8")


def write_backup(url: URL, out: Writable) -> Manifest:
    """mariadb-dump of the database at ``url`` into ``out``, then the manifest lines."""
    if not url.database:
        raise BackupError("数据库地址中没有数据库名。")
    dump = client("mariadb-dump", "mysqldump")
    made_at = _utcnow()
    counter = RowCounter()
    digest = hashlib.sha256()
    size = 0
    with defaults_file(url) as cnf, tempfile.TemporaryFile() as errors:
        argv = [
            dump, f"--defaults-extra-file={cnf}",
            # the schema has no stored routines or events: restore moves tables (and their rows) only
            "--single-transaction", "--quick", "--hex-blob", "--no-tablespaces", "--skip-dump-date",
            "--add-drop-table", url.database,
        ]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=errors)
        assert proc.stdout is not None
        try:
            partial = b""
            while chunk := proc.stdout.read(CHUNK):
                out.write(chunk)
                digest.update(chunk)
                size += len(chunk)
                lines = (partial + chunk).split(b"\n")
                partial = lines.pop()
                for line in lines:
                    counter.feed(line)
            if partial:
                counter.feed(partial)  # no newline at the end: not mariadb-dump's last line
        except BaseException:
            proc.kill()
            raise
        finally:
            proc.stdout.close()
            returncode = proc.wait()
        if returncode != 0:
            detail = _last_error_line(errors) or f"退出码 {returncode}"
            raise BackupError(f"{Path(dump).name} 报错:{detail}")
    if partial or not counter.last_line.startswith(COMPLETED):
        raise BackupError(f"{Path(dump).name} 没有写出完成标记,导出不完整,备份未完成。")
    manifest = Manifest(kind="mysql", made_at=made_at, revision=counter.revision, tables=counter.tables,
                        sha256=digest.hexdigest(), content_bytes=size, source=counter.server)
    out.write(trailer(manifest))
    return manifest


def trailer(manifest: Manifest) -> bytes:
    """The two comment lines that follow mariadb-dump's output."""
    line = MANIFEST_PREFIX + manifest.to_json().encode("utf-8") + b"\n"
    if len(line) > _MAX_MANIFEST:
        raise BackupError("表太多,校验清单超出长度上限。")
    return line + END_PREFIX + hashlib.sha256(line).hexdigest().encode() + b"\n"


# --- verify ----------------------------------------------------------------------------------------

@dataclass
class Scan:
    sha256: str
    content_bytes: int
    lines: int  # complete lines before the manifest (or in the whole file, when it has none)
    last_line: bytes  # the last line before the manifest, without its newline
    manifest_line: bytes | None
    trailer_rest: bytes  # what follows the manifest line


def scan(content: Content, tee: Callable[[bytes], None] | None = None) -> Scan:
    """Hash the dump body and find the manifest lines at its end, in one streaming pass."""
    digest = hashlib.sha256()
    hashed = 0
    newlines = 0
    tail = b""
    for chunk in content.chunks():
        if tee is not None:
            tee(chunk)
        tail += chunk
        if len(tail) >= 2 * _TAIL:
            # hash all but the last _TAIL bytes, cutting at a line start so the tail begins with a line
            cut = tail.rfind(b"\n", 0, len(tail) - _TAIL) + 1 or len(tail) - _TAIL
            digest.update(tail[:cut])
            newlines += tail.count(b"\n", 0, cut)
            hashed += cut
            tail = tail[cut:]
    found = tail.rfind(b"\n" + MANIFEST_PREFIX)
    at_start = tail.startswith(MANIFEST_PREFIX)
    start = found + 1 if found >= 0 else 0 if at_start else len(tail)
    body, trailer = tail[:start], tail[start:]
    digest.update(body)
    newlines += body.count(b"\n")
    manifest_line: bytes | None = None
    rest = b""
    if trailer:
        end = trailer.find(b"\n")
        manifest_line, rest = (trailer, b"") if end < 0 else (trailer[:end + 1], trailer[end + 1:])
    last_line = body[:-1].rsplit(b"\n", 1)[-1] if body.endswith(b"\n") else b""
    return Scan(digest.hexdigest(), hashed + len(body), newlines, last_line, manifest_line, rest)


def verify(path: Path, *, allow_unverified: bool = False, check_schema: bool = True) -> BackupInfo:
    with open_content(path) as content:
        compressed = content.compressed
        result = scan(content)
    manifest = manifest_of(result, allow_unverified=allow_unverified)
    if manifest is None:
        return BackupInfo(path=path, kind="mysql", compressed=compressed, manifest=None, revision=None,
                          notes=["这是没有校验清单的旧备份:只确认了 mariadb-dump 的完成标记,恢复后才能核对版本。"])
    note = check_revision(manifest.revision) if check_schema else None
    return BackupInfo(path=path, kind="mysql", compressed=compressed, manifest=manifest,
                      revision=manifest.revision, notes=[note] if note else [])


def manifest_of(result: Scan, *, allow_unverified: bool) -> Manifest | None:
    completed = result.last_line.startswith(COMPLETED)
    if result.manifest_line is None:
        if not completed:
            raise BackupError(
                f"备份文件不完整:在第 {result.lines:,} 行后被截断(没有 mariadb-dump 的完成标记,"
                "也没有校验清单)。"
            )
        if not allow_unverified:
            raise BackupError(
                "这个备份没有校验清单(本程序旧版本生成的备份,或不是本程序的备份),无法确认它完整。"
                "确认要恢复它时请加 --allow-unverified(仍先导入临时库,成功后才替换)。"
            )
        return None
    expected_end = END_PREFIX + hashlib.sha256(result.manifest_line).hexdigest().encode() + b"\n"
    if not result.manifest_line.endswith(b"\n") or not result.trailer_rest.startswith(END_PREFIX[:10]):
        raise BackupError("备份文件不完整:在结尾的校验清单处被截断。")
    if result.trailer_rest != expected_end:
        if len(result.trailer_rest) < len(expected_end) and expected_end.startswith(result.trailer_rest):
            raise BackupError("备份文件不完整:在结尾的校验清单处被截断。")
        raise BackupError("校验和不一致:备份文件结尾的校验清单被改动或损坏,不能用于恢复。")
    manifest = Manifest.from_json(result.manifest_line[len(MANIFEST_PREFIX):])
    if manifest.kind != "mysql":
        raise BackupError("备份文件的校验清单与文件类型不符。")
    if result.sha256 != manifest.sha256 or result.content_bytes != manifest.content_bytes:
        raise BackupError("校验和不一致:备份文件在生成之后被改动或损坏(磁盘或传输错误),不能用于恢复。")
    if not completed:
        raise BackupError("备份文件不完整:mariadb-dump 没有写出完成标记。")
    return manifest


# --- restore ---------------------------------------------------------------------------------------

def _q(name: str) -> str:
    """A quoted identifier. The names put into SQL text here are the database's own (its catalogue, our
    staging names): values are always bound, so the ``# nosec B608`` marks below are safe."""
    return "`" + name.replace("`", "``") + "`"


def _mysql_error(exc: DBAPIError) -> int:
    args = getattr(exc.orig, "args", ())
    return int(args[0]) if args and isinstance(args[0], int) else 0


def _schema_exists(conn: Connection, name: str) -> bool:
    return conn.execute(text("SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = :n"),
                        {"n": name}).first() is not None


def _base_tables(conn: Connection, schema: str) -> list[str]:
    rows = conn.execute(text(
        "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = :s AND TABLE_TYPE = 'BASE TABLE'"
        " ORDER BY TABLE_NAME"), {"s": schema}).scalars()
    return [str(r) for r in rows]


def has_rows(conn: Connection, schema: str) -> bool:
    return any(
        conn.execute(text(f"SELECT 1 FROM {_q(schema)}.{_q(t)} LIMIT 1")).first()  # nosec B608
        for t in _base_tables(conn, schema) if t != "alembic_version"
    )


def _create_database(conn: Connection, name: str, url: URL) -> None:
    try:
        conn.execute(text(f"CREATE DATABASE {_q(name)} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"))
    except DBAPIError as exc:
        if _mysql_error(exc) in (1044, 1045, 1227):
            raise BackupError(
                f"数据库账号 {url.username or ''} 没有创建数据库 {name} 的权限。恢复先把备份导入一个临时数据库,"
                "核对无误后才替换目标库:请用有创建、删除数据库权限的账号执行恢复,或给该账号授权,例如 "
                f"GRANT ALL ON `{url.database}\\_\\_%`.* TO 该账号;目标数据库没有改动。"
            ) from None
        raise BackupError(f"创建临时数据库 {name} 失败(MariaDB 错误 {_mysql_error(exc)})。") from None


def _helper_name(target: str, kind: str, suffix: str) -> str:
    return f"{target[:40]}__{kind}_{suffix}"  # identifiers are limited to 64 characters


def restore(url: URL, info: BackupInfo, *, force: bool, progress: Callable[[str], None]) -> list[str]:
    """Replace the database at ``url`` with the verified backup ``info``; returns notes for the operator."""
    target = url.database
    if not target:
        raise BackupError("数据库地址中没有数据库名。")
    server = create_engine(url.set(database=""), isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    notes: list[str] = []
    try:
        with _database_errors(), server.connect() as conn:
            exists = _schema_exists(conn, target)
            if exists and not force and has_rows(conn, target):
                raise BackupError("目标数据库中已有数据,拒绝覆盖。确认要用备份替换现有数据时,请加 --force。")
            stage = _helper_name(target, "restore", secrets.token_hex(4))
            _create_database(conn, stage, url)
            try:
                progress(f"正在把备份导入临时数据库 {stage} ……")
                _load(url.set(database=stage), info)
                revision = _check_stage(conn, stage, info)
                note = check_revision(revision)
                if note:
                    _upgrade(url.set(database=stage))
                    notes.append(note)
                progress(checked_message(info) + ",正在替换目标数据库的表 ……")
                notes.extend(_swap(conn, url, stage, exists))
            finally:
                try:
                    conn.execute(text(f"DROP DATABASE IF EXISTS {_q(stage)}"))
                except DBAPIError:
                    notes.append(f"临时数据库 {stage} 未能删除,可手工删除:DROP DATABASE `{stage}`;")
    finally:
        server.dispose()
    return notes


@contextmanager
def _database_errors() -> Iterator[None]:
    """An error from the server before the swap, as its number only: the target was not touched."""
    try:
        yield
    except DBAPIError as exc:
        if exc.connection_invalidated or _mysql_error(exc) in (2002, 2003, 2006, 2013):
            raise  # the CLI reports an unreachable server itself
        raise BackupError(f"恢复时数据库报错(MariaDB 错误 {_mysql_error(exc)}),目标数据库没有改动。") from None


def _load(stage_url: URL, info: BackupInfo) -> None:
    """Feed the file to the mariadb client, hashing it again: the bytes loaded are the bytes verified."""
    program = client("mariadb", "mysql")
    assert stage_url.database
    with defaults_file(stage_url) as cnf, tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen([program, f"--defaults-extra-file={cnf}", "--binary-mode", stage_url.database],
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=errors)
        assert proc.stdin is not None
        stdin = proc.stdin
        client_gone = False

        def feed(chunk: bytes) -> None:
            nonlocal client_gone
            if not client_gone:
                try:
                    stdin.write(chunk)
                except BrokenPipeError:  # the client stopped at an error: its message says why
                    client_gone = True

        try:
            with open_content(info.path) as content:
                result = scan(content, tee=feed)
        finally:
            with suppress(BrokenPipeError):
                stdin.close()
            returncode = proc.wait()
        if returncode != 0 or client_gone:
            raise BackupError(
                f"把备份导入临时数据库时出错({_describe_client_error(_last_error_line(errors), returncode)}),"
                "已停止恢复,目标数据库没有改动。"
            )
    if info.manifest is not None and (result.sha256 != info.manifest.sha256
                                      or result.content_bytes != info.manifest.content_bytes):
        raise BackupError("备份文件在校验之后被改动,已停止恢复,目标数据库没有改动。")


def _describe_client_error(line: str, returncode: int) -> str:
    """The error number and line only: the client's text quotes SQL, which is no message for a user."""
    match = re.search(r"ERROR (\d+)(?: \(\w+\))? at line (\d+)", line)
    if match:
        return f"MariaDB 错误 {match.group(1)},备份第 {int(match.group(2)):,} 行"
    match = re.search(r"ERROR (\d+)", line)
    if match:
        return f"MariaDB 错误 {match.group(1)}"
    return f"mariadb 客户端退出码 {returncode}"


def _check_stage(conn: Connection, stage: str, info: BackupInfo) -> str | None:
    """The staging database holds exactly the manifest's tables and rows; returns its revision."""
    tables = _base_tables(conn, stage)
    if info.manifest is not None:
        counts = {t: int(conn.execute(text(f"SELECT COUNT(*) FROM {_q(stage)}.{_q(t)}")).scalar_one())  # nosec B608
                  for t in tables}
        compare_counts(info.manifest.tables, counts)
    revision: str | None = None
    if "alembic_version" in tables:
        revision = conn.execute(text(f"SELECT version_num FROM {_q(stage)}.alembic_version")).scalar()  # nosec B608
    if info.manifest is not None and revision != info.manifest.revision:
        raise BackupError("备份中的数据库版本与校验清单不符,已停止恢复,目标数据库没有改动。")
    return revision


def _upgrade(stage_url: URL) -> None:
    engine = create_engine(stage_url)
    try:
        upgrade(engine)
    finally:
        engine.dispose()


def _swap(conn: Connection, url: URL, stage: str, exists: bool) -> list[str]:
    """One RENAME TABLE: the target's tables out to a side database, the staged ones in."""
    target = url.database
    assert target
    if not exists:
        _create_database(conn, target, url)
    previous = _base_tables(conn, target)
    staged = _base_tables(conn, stage)
    # the service should be stopped; if it is not, wait a little for its locks instead of a year
    conn.execute(text("SET SESSION lock_wait_timeout = 60"))
    before = ""
    moves: list[str] = []
    if previous:
        before = _helper_name(target, "before", _utcnow().strftime("%Y%m%d%H%M%S"))
        _create_database(conn, before, url)
        moves += [f"{_q(target)}.{_q(t)} TO {_q(before)}.{_q(t)}" for t in previous]
    moves += [f"{_q(stage)}.{_q(t)} TO {_q(target)}.{_q(t)}" for t in staged]
    try:
        conn.execute(text("RENAME TABLE " + ", ".join(moves)))
    except DBAPIError as exc:
        if before:
            conn.execute(text(f"DROP DATABASE IF EXISTS {_q(before)}"))
        code = _mysql_error(exc)
        if code in (1205, 1213):
            raise BackupError("目标数据库的表正被使用(服务是否仍在运行?),请先停止服务再恢复;目标数据库没有改动。") from None
        raise BackupError(f"替换目标数据库的表时出错(MariaDB 错误 {code}),目标数据库没有改动。") from None
    if not before:
        return []
    try:
        conn.execute(text(f"DROP DATABASE {_q(before)}"))
    except DBAPIError:
        return [f"恢复前的表保留在数据库 {before} 中(删除它时出错),确认无误后可手工删除:DROP DATABASE `{before}`;"]
    return []

