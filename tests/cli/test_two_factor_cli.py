"""``crm-admin reset-two-factor``: the operator's way back in when a user (the last administrator, say)
has lost both the phone and the recovery codes."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from crm_admin import db
from tests.cli.runner import run_cli


@pytest.mark.cli_command("reset-two-factor")
def test_reset_two_factor_from_the_command_line(engine: Any, make_user: Any) -> None:
    from crm_admin.accounts import second_factor
    from crm_admin.accounts.models import SysUser, UserRecoveryCode
    from crm_admin.audit.models import AuditLog

    user = make_user("tfa_cli", ["manager"])
    with db.transaction() as session:
        row = session.get(SysUser, user.id)
        second_factor.begin_enrolment(session, row)
        row.totp_enabled_at = db.utcnow()
        session.add(UserRecoveryCode(user_id=row.id, code_hash="x"))
        epoch = row.session_epoch
    result = run_cli("reset-two-factor", "tfa_cli")
    assert result.exit_code == 0 and "已重置" in result.output, result.output
    with db.session_factory()() as session:
        row = session.get(SysUser, user.id)
        assert row.totp_secret is None and row.totp_enabled_at is None and row.session_epoch == epoch + 1
        assert not session.execute(select(UserRecoveryCode).where(UserRecoveryCode.user_id == user.id)).first()
        assert session.execute(select(AuditLog).where(AuditLog.action == "totp_reset",
                                                      AuditLog.resource_id == str(user.id))).first()
    again = run_cli("reset-two-factor", "tfa_cli")
    assert again.exit_code == 0 and "未启用" in again.output
    nobody = run_cli("reset-two-factor", "nobody")
    assert nobody.exit_code == 1 and "用户不存在" in nobody.output
