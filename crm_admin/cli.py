"""The ``crm-admin`` command."""

from __future__ import annotations

import sys

import click

from crm_admin import db
from crm_admin.settings import UnsafeSettings, get_settings


def _prepare(*, seed: bool = True) -> str | None:
    """Migrate to head and seed what is missing; returns a freshly generated admin password, if any."""
    from crm_admin.core.context import SYSTEM, acting_as
    from crm_admin.migrate import upgrade
    from crm_admin.seeding import seed as run_seed

    settings = get_settings()
    engine = db.configure(settings.database_url)
    upgrade(engine)
    if not seed:
        return None
    with acting_as(SYSTEM), db.transaction() as session:
        report = run_seed(session, admin_password=settings.admin_password or None)
    if report.admin_password and not settings.admin_password:
        return report.admin_password
    if report.admin_password:
        return ""
    return None


@click.group(help="客户信息管理系统 — 命令行工具")
def main() -> None:
    pass


@main.command(help="迁移数据库、补齐初始数据并启动服务。")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=int)
@click.option("--certfile", type=click.Path(exists=True, dir_okay=False), default=None)
@click.option("--keyfile", type=click.Path(exists=True, dir_okay=False), default=None)
def serve(host: str, port: int, workers: int, certfile: str | None, keyfile: str | None) -> None:
    import os

    import uvicorn

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
    shown_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    click.echo("")
    click.echo(f"客户信息管理系统已启动:{scheme}://{shown_host}:{port}/admin/")
    if password:
        click.echo("首次启动,已创建初始管理员:")
        click.echo("  用户名:admin")
        click.echo(f"  密码:  {password}")
        click.echo("  (此密码只显示这一次,首次登录后须修改)")
    elif password == "":
        click.echo("已创建初始管理员 admin,密码为 CRM_ADMIN_PASSWORD 的值,首次登录后须修改。")
    click.echo("")
    uvicorn.run(
        "crm_admin.web.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        proxy_headers=True,
        forwarded_allow_ips=settings.trusted_proxies,
        ssl_certfile=str(settings.tls_certfile) if settings.tls_certfile else None,
        ssl_keyfile=str(settings.tls_keyfile) if settings.tls_keyfile else None,
        log_level=settings.log_level.lower(),
        access_log=False,
    )


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
        with db.transaction() as session:
            user = create_user(session, username=username, password=password, real_name=real_name,
                               roles=list(roles), must_change_password=must_change)
    except UserError as exc:
        click.echo(f"创建失败:{exc.message}", err=True)
        sys.exit(1)
    click.echo(f"已创建用户 {user.username}(角色:{', '.join(roles)})")


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


if __name__ == "__main__":
    main()
