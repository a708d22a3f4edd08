"""The command line tells a refused value or a database error in words, never with SQL or a
traceback (issue 11, hole 8)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import exc as sa_exc
from sqlalchemy import select

from crm_admin import db
from crm_admin.accounts.models import SysUser
from crm_admin.cli import main
from tests.conftest import PASSWORD

CRM_ADMIN = Path(sys.executable).with_name("crm-admin")
LEAKS = ("Traceback", "SQL", "INSERT", "pymysql", "sqlite3", "DataError", "[parameters")


@pytest.mark.skipif(not CRM_ADMIN.exists(), reason="needs the installed crm-admin")
def test_a_name_longer_than_its_column_is_refused_in_chinese(engine: Any) -> None:
    """MariaDB refused it with a traceback carrying the INSERT; SQLite kept it."""
    proc = subprocess.run(
        [str(CRM_ADMIN), "create-user", "--username", "longname", "--password", PASSWORD,
         "--real-name", "名" * 65, "--role", "manager"],
        env=dict(os.environ), capture_output=True, text=True, timeout=120,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "不能超过 64 个字符" in out
    assert not [leak for leak in LEAKS if leak in out], out
    with db.session_factory()() as s:
        assert s.execute(select(SysUser).where(SysUser.username == "longname")).first() is None


def test_a_database_error_in_a_command_is_told_in_words(engine: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from crm_admin.accounts import service

    def fail(*_args: Any, **_kwargs: Any) -> None:
        raise sa_exc.ProgrammingError("INSERT INTO sys_user (username) VALUES (%(u)s)", {"u": "x"},
                                      Exception(1146, "Table 'crm.sys_user' doesn't exist"))

    monkeypatch.setattr(service, "create_user", fail)
    result = CliRunner().invoke(main, ["create-user", "--username", "someone", "--password", PASSWORD])
    assert result.exit_code == 1
    assert "系统内部错误" in result.output and "1146" in result.output
    assert not [leak for leak in LEAKS if leak in result.output], result.output
