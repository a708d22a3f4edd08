"""The ``crm-admin`` command.

Each command imports what it needs when it runs: ``crm-admin --help`` or a mistyped option answers
without loading the web application, the generator or the backup machinery.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from crm_admin import db
from crm_admin.core.formatting import to_local
from crm_admin.settings import UnsafeSettings, get_settings

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from crm_admin.backup import BackupInfo


def _prepare(*, seed: bool = True) -> str | None:
    """Migrate to head and seed what is missing; returns a freshly generated admin password, if any."""
    from crm_admin.core.context import SYSTEM, acting_as
    from crm_admin.migrate import ensure_database, upgrade
    from crm_admin.seeding import seed as run_seed

    settings = get_settings()
    ensure_database(settings.database_url)
    # migrations may build indexes over millions of rows: the job timeouts, not the page ones
    engine = db.configure(settings.database_url, long_running=True)
    upgrade(engine)
    if not seed:
        return None
    # every transaction of the command line runs again on a passing database error (a deadlock, a
    # cluster node leaving: crm_admin/retry.py)
    with acting_as(SYSTEM):
        report = db.run_in_transaction(
            lambda session: run_seed(session, admin_password=settings.admin_password or None), where="cli:seed")
    if report.admin_password and not settings.admin_password:
        return report.admin_password
    if report.admin_password:
        return ""
    return None


class CrmGroup(click.Group):
    """Turns an unreachable database or a refused operation into one clear line, not a traceback."""

    def invoke(self, ctx: click.Context) -> object:
        from sqlalchemy.exc import OperationalError, SQLAlchemyError

        from crm_admin.core.errors import UserError, friendly_db_error

        try:
            return super().invoke(ctx)
        except OperationalError as exc:
            from crm_admin.settings import get_settings as settings_now

            url = _safe_url(settings_now().database_url)
            click.echo(f"无法连接数据库({url}):{exc.orig or exc}", err=True)
            click.echo("请检查 CRM_DATABASE_URL、数据库服务是否已启动以及账号权限。", err=True)
            sys.exit(3)
        except UserError as exc:
            click.echo(exc.message, err=True)
            sys.exit(1)
        except SQLAlchemyError as exc:  # the reason in words and the server's error code, never SQL
            code = getattr(getattr(exc, "orig", None), "args", [None])[:1]
            suffix = f"(数据库错误代码 {code[0]})" if code and isinstance(code[0], int) else ""
            click.echo(friendly_db_error(exc) + suffix, err=True)
            sys.exit(1)
        except (EOFError, click.exceptions.Abort):  # click itself would print only "Aborted!"
            click.echo("操作已取消(没有读到需要的输入,或被中断),没有任何改动。", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("已中断。", err=True)
            sys.exit(130)


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(无效的数据库地址)"


@click.group(cls=CrmGroup, help="客户信息管理系统 — 命令行工具")
def main() -> None:
    # Every table in the metadata before any command runs: the audit writer and the chain check look
    # tables up there, and a command run from a shell has imported nothing else yet.
    import crm_admin.models  # noqa: F401


@main.command(help="迁移数据库、补齐初始数据并启动服务。")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=int)
@click.option("--certfile", type=click.Path(exists=True, dir_okay=False), default=None)
@click.option("--keyfile", type=click.Path(exists=True, dir_okay=False), default=None)
def serve(host: str, port: int, workers: int, certfile: str | None, keyfile: str | None) -> None:
    import os

    from crm_admin.web.protocol import protocol_path

    settings = get_settings()
    if certfile:
        os.environ["CRM_TLS_CERTFILE"] = certfile
    if keyfile:
        os.environ["CRM_TLS_KEYFILE"] = keyfile
    get_settings.cache_clear()
    settings = get_settings()
    try:
        settings.check_production()
        settings.resolved_secret_key()
    except UnsafeSettings as exc:
        click.echo(str(exc), err=True)
        sys.exit(2)
    password = _prepare()
    scheme = "https" if settings.tls_certfile and settings.tls_keyfile else "http"
    # the address shown to the user, not one bound to
    shown_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # nosec B104
    url = f"{scheme}://{shown_host}:{port}/admin/"

    def banner() -> None:
        click.echo("")
        click.echo(f"客户信息管理系统已启动:{url}")
        if password:
            click.echo("首次启动,已创建初始管理员:")
            click.echo("  用户名:admin")
            click.echo(f"  密码:  {password}")
            click.echo("  (此密码只显示这一次,首次登录后须修改)")
        elif password == "":
            click.echo("已创建初始管理员 admin,密码为 CRM_ADMIN_PASSWORD 的值,首次登录后须修改。")
        else:
            click.echo("用浏览器打开上面的地址登录(初始管理员:admin;忘记密码:crm-admin reset-password admin)。")
        click.echo("按 Ctrl+C 停止服务。")
        click.echo("")

    options: dict[str, Any] = {
        "factory": True,
        "host": host,
        "port": port,
        "workers": workers,
        "proxy_headers": True,
        "forwarded_allow_ips": settings.trusted_proxies,
        "ssl_certfile": str(settings.tls_certfile) if settings.tls_certfile else None,
        "ssl_keyfile": str(settings.tls_keyfile) if settings.tls_keyfile else None,
        # uvicorn's own start-up chatter only at DEBUG: the banner (URL, how to log in) stays the last
        # thing on the screen; requests are logged by our access log, errors still show.
        "log_level": "debug" if settings.log_level == "DEBUG" else "warning",
        "access_log": False,
        # keep idle connections longer than a browser's pause between clicks and than a reverse proxy's
        # upstream keep-alive: with uvicorn's 5 s a request sent just as the server closes the connection
        # fails with "connection reset"
        "timeout_keep_alive": 75,
        # httptools parses a request in 0.28 ms of CPU where h11 takes 0.42 (/healthz, one worker);
        # uvloop measured no better than asyncio here (0.26 ms) and is not used
        "http": protocol_path(),
        "loop": "asyncio",
    }
    app_path = "crm_admin.web.app:create_app"
    # uvicorn shuts down gracefully on Ctrl+C, then passes it on
    with contextlib.suppress(KeyboardInterrupt):
        _run_server(app_path, options, workers, banner)
    click.echo("服务已停止。")


def _run_server(app_path: str, options: dict[str, Any], workers: int, banner: Any) -> None:
    import uvicorn

    if workers > 1:
        # Several worker processes: uvicorn's supervisor starts them; announce before it does.
        banner()
        uvicorn.run(app_path, **options)
        return

    class AnnouncingServer(uvicorn.Server):
        """Prints the banner once the socket is listening, so the URL works when it is shown."""

        async def startup(self, sockets: list[Any] | None = None) -> None:
            await super().startup(sockets=sockets)
            if self.started:
                banner()

    AnnouncingServer(uvicorn.Config(app_path, **options)).run()


@main.command(help="把数据库结构升级到最新版本。")
def migrate() -> None:
    _prepare(seed=False)
    click.echo("数据库已是最新结构。")


@main.command(help="补齐字典、角色、权限策略和初始管理员(可重复执行)。")
def seed() -> None:
    password = _prepare()
    click.echo("初始数据已就绪。")
    if password:
        click.echo(f"已创建初始管理员 admin,密码:{password}(首次登录后须修改)")


@main.command("create-user", help="创建用户。")
@click.option("--username", required=True)
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
@click.option("--real-name", default="")
@click.option("--role", "roles", multiple=True, default=["manager"], show_default=True)
@click.option("--must-change/--no-must-change", default=True, show_default=True)
def create_user_cmd(username: str, password: str, real_name: str, roles: tuple[str, ...],
                    must_change: bool) -> None:
    from crm_admin.accounts.service import create_user
    from crm_admin.core.errors import UserError

    _prepare()
    try:
        user = db.run_in_transaction(
            lambda session: create_user(session, username=username, password=password, real_name=real_name,
                                        roles=list(roles), must_change_password=must_change),
            where="cli:create-user")
    except UserError as exc:
        click.echo(f"创建失败:{exc.message}", err=True)
        sys.exit(1)
    click.echo(f"已创建用户 {user.username}(角色:{', '.join(roles)})")


@main.command("search-index", help="重建搜索索引(客户、联系人、产品的名称任意部分、拼音、首字母和号码)。")
def search_index_cmd() -> None:
    import time

    import crm_admin.models  # noqa: F401  (the searchable models register themselves)
    from crm_admin.core import search

    _prepare(seed=False)
    started = time.monotonic()
    with db.get_engine().begin() as conn:
        counts = search.rebuild(conn)
    click.echo(f"搜索索引已重建,用时 {time.monotonic() - started:.1f} 秒:")
    for table, count in counts.items():
        click.echo(f"  {table}: {count} 条")


@main.command("manager-copies",
              help="核对销售机会、联系记录、流失预警、联系人、关怀记录、关怀计划、订单上记录的客户经理是否都与其客户当前的客户经理一致"
                   "(销售主管的首页、销售漏斗、记录列表和流失预警处理页按它查找和统计);有不一致时退出码为 1,--fix 改正。")
@click.option("--fix", is_flag=True, help="改正不一致的行")
def manager_copies_cmd(fix: bool) -> None:
    import crm_admin.models  # noqa: F401  (every model that carries the manager)
    from crm_admin.core import audit
    from crm_admin.core.context import SYSTEM, acting_as
    from crm_admin.customers.models import manager_copy_differences

    _prepare(seed=False)
    def check(session: Session) -> dict[str, int]:
        found = manager_copy_differences(session.connection(), fix=fix)
        if fix and any(found.values()):  # the repair is audited with it, in the same transaction
            audit.record(session, "update", resource="customer",
                         changes={table: count for table, count in found.items() if count})
        return found

    with acting_as(SYSTEM):
        differences = db.run_in_transaction(check, where="cli:manager-copies")
    _report_differences(differences, fix, unit="行", fixed="已改正",
                        hint="有不一致的行:运行 crm-admin manager-copies --fix 改正。")


def _report_differences(differences: dict[str, int], fix: bool, *, unit: str, fixed: str, hint: str) -> None:
    """What a check-and-repair command found, per table; exit 1 when something differs and was not fixed."""
    for name, count in differences.items():
        click.echo(f"  {name}: {count} {unit}不一致" + (f",{fixed}" if fix and count else ""))
    if not any(differences.values()):
        click.echo("全部一致。")
    elif not fix:
        click.echo(hint, err=True)
        sys.exit(1)


@main.command("totals",
              help="核对与数据同步保存的汇总(进行中商机按客户经理和阶段、关怀任务按状态、日期和负责人)是否与直接计数完全相同"
                   "(销售漏斗、首页和关怀工作台按它统计);有不一致时退出码为 1,--fix 重新计数。")
@click.option("--fix", is_flag=True, help="从数据重新计数不一致的汇总")
def totals_cmd(fix: bool) -> None:
    import crm_admin.models  # noqa: F401  (every model whose totals are kept)
    from crm_admin.core import audit, totals
    from crm_admin.core.context import SYSTEM, acting_as

    _prepare(seed=False)
    def check(session: Session) -> dict[str, int]:
        conn = session.connection()
        found = {t.name: totals.differences(conn, t) for t in totals.registered()}
        for t in totals.registered():
            if fix and found[t.name]:  # the repair is audited with it, in the same transaction
                totals.fix(conn, t)
                audit.record(session, "update", resource=getattr(t.model, "__resource__", "") or t.name,
                             changes={t.name: found[t.name]}, detail=f"重新计数汇总 {t.name}")
        return found

    with acting_as(SYSTEM):
        differences = db.run_in_transaction(check, where="cli:totals")
    _report_differences(differences, fix, unit="组", fixed="已重新计数",
                        hint="有不一致的汇总:运行 crm-admin totals --fix 重新计数。")


@main.command(help="生成性能测试数据(批量写入,可复现):--scale 1.0 为标准规模(20 万客户)。")
@click.option("--scale", default=1.0, show_default=True, type=float, help="数据量倍数")
@click.option("--seed", "seed_value", default=42, show_default=True, type=int, help="随机种子")
def generate(scale: float, seed_value: int) -> None:
    from crm_admin.perf.generate import AlreadyGenerated
    from crm_admin.perf.generate import generate as run_generate

    password = _prepare()
    if password:
        click.echo(f"已创建初始管理员 admin,密码:{password}(首次登录后须修改)")
    try:
        report = run_generate(db.get_engine(), scale=scale, seed=seed_value, progress=click.echo)
    except AlreadyGenerated as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
    summary = report.as_dict()
    click.echo(f"已生成 {summary['total_rows']} 行,用时 {summary['seconds']} 秒:")
    for table, count in summary["rows"].items():
        click.echo(f"  {table}: {count}")


@main.command("reclaim", help="客户自动回收:按已启用的回收规则把到期客户退回公海(与每天的定时任务相同);"
                             "--dry-run 只统计每条规则会回收多少客户和用时,不做任何改动。")
@click.option("--dry-run", is_flag=True, help="只评估,不移动客户")
def reclaim_cmd(dry_run: bool) -> None:
    import time

    from crm_admin.core.context import SYSTEM, acting_as
    from crm_admin.reclaim import service
    from crm_admin.scheduler.service import run_job

    _prepare(seed=False)
    now = db.utcnow()
    started = time.perf_counter()
    if dry_run:
        with db.session_factory()() as session:
            results = service.evaluate(session, service.enabled_rules(session), now)
        for r in results:
            click.echo(f"  {r.name}({r.condition}):{r.count} 个客户,{r.seconds:.2f} 秒")
        total = sum(r.count for r in results)
        click.echo(f"共 {len(results)} 条已启用的规则,将回收 {total} 个客户;评估用时 "
                   f"{time.perf_counter() - started:.2f} 秒(未做任何改动)")
        return
    # the scheduled job's own run: under its lease, recorded in the run history like any run
    with acting_as(SYSTEM):
        result = run_job("reclaim", trigger="manual")
    click.echo(f"{result.detail},用时 {time.perf_counter() - started:.2f} 秒")
    if result.status == "failed":
        sys.exit(1)


@main.command("reset-password", help="重置用户密码(打印新密码,首次登录须修改),并解除锁定。")
@click.argument("username")
@click.option("--password", default=None, help="指定新密码(默认随机生成)")
def reset_password_cmd(username: str, password: str | None) -> None:
    from sqlalchemy import select

    from crm_admin.accounts.models import SysUser
    from crm_admin.core import audit
    from crm_admin.core.context import SYSTEM, acting_as
    from crm_admin.core.security import hash_password, password_problems
    from crm_admin.seeding import generate_password

    _prepare(seed=False)
    new_password = password or generate_password()
    problems = password_problems(new_password, username=username)
    if problems:
        click.echo(f"密码不符合要求:{';'.join(problems)}", err=True)
        sys.exit(1)
    def reset(session: Session) -> None:
        user = session.execute(select(SysUser).where(SysUser.username == username)).scalar_one_or_none()
        if user is None:
            click.echo(f"用户不存在:{username}", err=True)
            sys.exit(1)
        user.password_hash = hash_password(new_password)
        user.must_change_password = True
        user.failed_logins = 0
        user.locked_until = None
        user.session_epoch = (user.session_epoch or 0) + 1  # signs out every open session
        audit.record(session, "password_reset", resource="user", resource_id=user.id,
                     detail="命令行重置密码")

    with acting_as(SYSTEM):
        db.run_in_transaction(reset, where="cli:reset-password")
    click.echo(f"已重置用户 {username} 的密码:{new_password}")
    click.echo("(此密码只显示这一次,登录后须修改)")


@main.command("reset-two-factor", help="重置用户的两步验证(手机和恢复码都丢失时使用):验证器和恢复码作废,"
                                       "登录会话失效;如其角色要求两步验证,下次登录时须重新设置。")
@click.argument("username")
def reset_two_factor_cmd(username: str) -> None:
    from sqlalchemy import select

    from crm_admin.accounts import second_factor
    from crm_admin.accounts.models import SysUser
    from crm_admin.core.context import SYSTEM, acting_as

    _prepare(seed=False)

    def reset(session: Session) -> bool:
        user = session.execute(select(SysUser).where(SysUser.username == username)
                               .with_for_update()).scalar_one_or_none()
        if user is None:
            click.echo(f"用户不存在:{username}", err=True)
            sys.exit(1)
        return second_factor.admin_reset(session, user, detail="命令行重置两步验证,用户登录会话已失效")

    with acting_as(SYSTEM):
        had = db.run_in_transaction(reset, where="cli:reset-two-factor")
    click.echo(f"已重置用户 {username} 的两步验证。" if had else f"用户 {username} 未启用两步验证,无需重置。")


@main.command("backup", help="把整个数据库一致地备份到一个文件并校验它;--verify 只校验已有的备份文件。")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="备份文件(默认:备份目录下的 crm-日期-时间.sqlite3/.sql;以 .gz 结尾则压缩)")
@click.option("--verify", "verify_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="不做备份,只校验这个备份文件是否完整(校验和、表、行数、数据库版本)")
def backup_cmd(output: Path | None, verify_file: Path | None) -> None:
    from crm_admin.backup import (
        BackupError,
        default_backup_name,
        make_verified_backup,
        prune_backups,
        verify,
    )

    if verify_file is not None:
        if output is not None:
            click.echo("--verify 与 -o 不能同时使用。", err=True)
            sys.exit(2)
        try:
            info = verify(verify_file)
        except BackupError as exc:
            click.echo(f"备份文件校验失败:{verify_file}", err=True)
            click.echo(exc.message, err=True)
            sys.exit(1)
        click.echo(f"备份文件完整:{verify_file}")
        for line in _describe_backup(info):
            click.echo(f"  {line}")
        return
    settings = get_settings()
    folder = settings.backup_dir or settings.data_dir / "backups"
    target = output or folder / default_backup_name(settings.database_url)
    try:
        info = make_verified_backup(settings.database_url, target)
    except BackupError as exc:
        click.echo(f"备份失败:{exc.message}", err=True)
        sys.exit(1)
    assert info.manifest is not None
    size = target.stat().st_size
    shown = f"{size / 1024 / 1024:.1f} MB" if size >= 1024 * 1024 else f"{max(size // 1024, 1)} KB"
    click.echo(f"备份完成并已校验:{target}({shown},{len(info.manifest.tables)} 张表,"
               f"共 {info.manifest.total_rows:,} 行,数据库版本 {info.manifest.revision})")
    if output is None:
        for old in prune_backups(folder, settings.backup_keep_days):
            click.echo(f"已清理过期备份:{old.name}")


def _describe_backup(info: BackupInfo) -> list[str]:
    """What ``backup --verify`` checked, for the operator."""

    from crm_admin.backup import code_revisions

    manifest = info.manifest
    kind = "SQLite 数据库副本" if info.kind == "sqlite" else "MariaDB/MySQL 导出(mariadb-dump)"
    lines = [f"类型:{kind}{'(gzip 压缩)' if info.compressed else ''}"]
    if manifest is None:
        return lines + info.notes
    made = to_local(manifest.made_at)
    head, _ = code_revisions()
    same = "与当前程序一致" if manifest.revision == head else f"当前程序为 {head}"
    lines += [
        f"生成时间:{made:%Y-%m-%d %H:%M:%S}({get_settings().timezone})",
        f"数据库版本:{manifest.revision}({same})",
        f"来源:{manifest.source}" if manifest.source else "",
        f"校验和:SHA-256 {manifest.sha256}(一致,{manifest.content_bytes:,} 字节)",
        f"{len(manifest.tables)} 张表,共 {manifest.total_rows:,} 行:",
    ]
    width = max((len(name) for name in manifest.tables), default=0)
    lines += [f"  {name:<{width}}  {count:>12,}" for name, count in sorted(manifest.tables.items())]
    return [line for line in lines if line] + info.notes


@main.command("restore", help="从备份文件恢复整个数据库:先完整校验,导入临时库核对无误后才替换;"
              "目标库已有数据时须加 --force(请先停止服务)。")
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="覆盖目标库中已有的数据")
@click.option("--allow-unverified", is_flag=True,
              help="允许恢复没有校验清单的旧备份(仍先导入临时库,成功后才替换)")
def restore_cmd(source: Path, force: bool, allow_unverified: bool) -> None:
    from crm_admin.backup import BackupError, restore

    settings = get_settings()
    try:
        report = restore(settings.database_url, source, force=force, allow_unverified=allow_unverified,
                         progress=click.echo)
    except BackupError as exc:
        click.echo(f"恢复失败:{exc.message}", err=True)
        sys.exit(1)
    for note in report.notes:
        click.echo(note)
    click.echo(f"已从 {source} 恢复数据库。")


@main.command(help="性能基准:以生产方式启动服务,逐页测量响应时间,结果写入 bench/results/。")
@click.option("--smoke", is_flag=True, help="冒烟模式:临时 SQLite 库、极小数据量,几秒完成(CI 使用)")
@click.option("--repeat", type=int, default=None, help="每个页面的计时请求数(默认 20,冒烟 3)")
@click.option("--workers", type=int, default=None, help="服务进程数(默认每核一个)")
@click.option("--url", "base_url", default=None, help="测量已在运行的服务,而不是自行启动")
@click.option("--out", "out_dir", default="bench/results", show_default=True, type=click.Path())
@click.option("--label", default=None, help="结果文件名(默认时间戳)")
@click.option("--only", multiple=True, help="只测这些页面(键名,可重复)")
@click.option("--pages/--no-pages", default=True, show_default=True, help="逐页测量(无并发)")
@click.option("--jobs", is_flag=True, help="同时测量定时任务(生日扫描、关怀计划、流失评估)与导出")
@click.option("--load-users", type=int, default=0, help="Locust 混合负载的并发用户数(0 为不运行;需 .[bench])")
@click.option("--load-duration", type=int, default=300, show_default=True,
              help="全部用户登录完成后,混合负载持续的秒数")
@click.option("--load-spawn-rate", type=float, default=2.0, show_default=True,
              help="每秒新登录的用户数(用户逐个登录,全部登录后才开始计持续时间)")
@click.option("--throughput-clients", type=int, default=0, show_default=True,
              help="逐页测量后,这么多个客户端连续请求客户列表(闭环),报告每秒请求数与每请求 CPU(0 为不测)")
@click.option("--throughput-seconds", type=float, default=20.0, show_default=True, help="吞吐量测量的秒数")
def bench(smoke: bool, repeat: int | None, workers: int | None, base_url: str | None, out_dir: str,
          label: str | None, only: tuple[str, ...], pages: bool, jobs: bool, load_users: int,
          load_duration: int, load_spawn_rate: float, throughput_clients: int, throughput_seconds: float) -> None:
    import tempfile
    from pathlib import Path

    from crm_admin.perf.bench import SMOKE_SCALE, prepare_database, run_bench

    database_url = get_settings().database_url
    data_dir = None
    if smoke:
        data_dir = Path(tempfile.mkdtemp(prefix="crm-bench-smoke-"))
        database_url = f"sqlite:///{data_dir / 'smoke.sqlite3'}"
        prepare_database(database_url, scale=SMOKE_SCALE)
    results = run_bench(database_url, smoke=smoke, repeat=repeat, workers=workers, base_url=base_url,
                        out_dir=Path(out_dir), label=label, only=list(only) or None, data_dir=data_dir,
                        progress=click.echo, pages=pages, jobs=jobs, load_users=load_users,
                        load_duration_s=load_duration, load_spawn_rate=load_spawn_rate,
                        throughput_clients=throughput_clients, throughput_seconds=throughput_seconds)
    failed = [p["key"] for p in results["pages"] if p["status"] == "error"]
    click.echo("结果:" + ",".join(results["files"]))
    if failed:
        click.echo("出错的页面:" + ",".join(failed), err=True)
        sys.exit(1)


@main.command("bench-writes", help="写入吞吐基准:多个客户经理同时保存联系记录,报告每秒保存数与 p95 耗时。")
@click.option("--writers", default=32, show_default=True, type=int, help="同时写入的客户经理数(每人一个线程)")
@click.option("--seconds", default=20.0, show_default=True, type=float, help="测量时长(秒)")
@click.option("--processes", default=1, show_default=True, type=int,
              help="把写入者分到几个进程(多进程时测的是数据库,而不是单个 Python 进程的上限)")
@click.option("--seal-every", default=2.0, show_default=True, type=float,
              help="测量期间每隔几秒运行一次审计日志封存(0 为不运行)")
@click.option("--prepare/--no-prepare", default=True, show_default=True,
              help="库中没有客户时先迁移并生成测试数据")
@click.option("--scale", default=None, type=float,
              help="生成测试数据的规模(默认 0.02:36 个客户经理、4,000 个客户)")
def bench_writes(writers: int, seconds: float, processes: int, seal_every: float, prepare: bool,
                 scale: float | None) -> None:
    import json

    from crm_admin.perf.write_bench import WRITE_BENCH_SCALE, run_write_bench

    database_url = get_settings().database_url
    if prepare:
        from crm_admin.perf.bench import prepare_database

        prepare_database(database_url, scale=scale or WRITE_BENCH_SCALE)
    db.configure(database_url, pool_size=writers + 2)
    result = run_write_bench(writers=writers, seconds=seconds, processes=processes, seal_every=seal_every or None,
                             progress=click.echo)
    summary = result.as_dict()
    click.echo(f"{writers} 个写入者({processes} 个进程){summary['seconds']} 秒:保存 {summary['saves']} 次,"
               f"每秒 {summary['saves_per_second']} 次,p50 {summary['p50_ms']} ms,p95 {summary['p95_ms']} ms,"
               f"出错 {summary['errors']} 次")
    click.echo(json.dumps(summary, ensure_ascii=False))


@main.command("demo", help="写入真实感的中文演示数据(部门、客户经理、客户、联系人、关怀、商机、订单……)。")
@click.option("--password", default=None, help="演示账号的统一密码(默认随机生成并打印)")
@click.option("--seed", "seed_value", default=2024, show_default=True, type=int, help="随机种子(可复现)")
def demo_cmd(password: str | None, seed_value: int) -> None:
    from crm_admin.core.context import SYSTEM, acting_as
    from crm_admin.core.security import password_problems
    from crm_admin.demo import DemoAlreadyLoaded, load_demo
    from crm_admin.seeding import generate_password

    admin_password = _prepare()
    demo_password = password or generate_password()
    problems = password_problems(demo_password)
    if problems:
        click.echo(f"密码不符合要求:{';'.join(problems)}", err=True)
        sys.exit(1)
    try:
        with acting_as(SYSTEM):
            report = db.run_in_transaction(
                lambda session: load_demo(session, password=demo_password, seed=seed_value), where="cli:demo")
    except DemoAlreadyLoaded as exc:
        click.echo(exc.message, err=True)
        sys.exit(1)
    click.echo("演示数据已写入:" + ",".join(f"{k} {v}" for k, v in report.counts.items()))
    click.echo("演示账号(密码相同" + ("" if password else ",只显示这一次") + f"):{demo_password}")
    roles = {"sales_lead": "销售主管", "manager": "客户经理", "readonly": "只读用户"}
    for username, real_name, role in report.users:
        click.echo(f"  {username:<10} {real_name}({roles.get(role, role)})")
    if admin_password:
        click.echo(f"已创建初始管理员 admin,密码:{admin_password}(首次登录后须修改)")


from crm_admin.audit.cli import audit as _audit_group  # noqa: E402  (the ``audit`` subcommands)

main.add_command(_audit_group)


if __name__ == "__main__":
    main()
