"""The permission gate: thread safety, per-version caching, the cost of the per-request check."""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import event

from crm_admin import db


def test_grants_are_cached_per_policy_version_and_cost_one_query(make_user: Any) -> None:
    from crm_admin.core.permissions import Gate

    user = make_user("g1", ["manager"])
    gate = Gate()
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    engine = db.get_engine()
    with engine.connect() as conn:
        first = gate.grants(conn, user.id)
        event.listen(engine, "before_cursor_execute", count)
        try:
            again = gate.grants(conn, user.id)
        finally:
            event.remove(engine, "before_cursor_execute", count)
    assert again is first
    assert len(statements) == 1 and "sys_meta" in statements[0]
    assert ("customer", "list") in first.permissions and first.scope == "self"


def test_gate_under_threads(make_user: Any) -> None:
    """Many threads asking while the policy version moves: no errors, always a consistent answer."""
    from crm_admin.core.permissions import Gate, bump_policy_version

    users = [make_user(f"t{i}", ["manager" if i % 2 else "readonly"]).id for i in range(4)]
    gate = Gate()
    errors: list[BaseException] = []
    wrong: list[Any] = []
    stop = threading.Event()

    def worker(n: int) -> None:
        try:
            with db.get_engine().connect() as conn:
                for i in range(60):
                    uid = users[(n + i) % len(users)]
                    grants = gate.grants(conn, uid)
                    expected = ("customer", "create") in grants.permissions
                    if expected != (users.index(uid) % 2 == 1):
                        wrong.append((uid, grants))
                    conn.rollback()
        except BaseException as exc:
            errors.append(exc)

    def bumper() -> None:
        while not stop.is_set():
            with db.transaction() as session:
                bump_policy_version(session.connection())
            stop.wait(0.05)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    b = threading.Thread(target=bumper)
    b.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    b.join()
    assert not errors, errors[:3]
    assert not wrong, wrong[:3]


def test_principal_scope_widest_role_wins(make_user: Any) -> None:
    from crm_admin.accounts.models import SysUser
    from crm_admin.core.principal import load_principal

    user = make_user("g2", ["manager", "readonly"])
    with db.session_factory()() as session:
        principal = load_principal(session.connection(), session.get(SysUser, user.id))
    assert principal.scope == "all" and principal.visible_user_ids is None
    assert principal.can("customer", "create") and not principal.can("customer", "delete")


def test_disabled_role_grants_nothing(make_user: Any) -> None:
    from sqlalchemy import update

    from crm_admin.accounts.models import SysRole, SysUser
    from crm_admin.core.permissions import bump_policy_version
    from crm_admin.core.principal import load_principal

    user = make_user("g3", ["manager"])
    with db.transaction() as session:
        session.execute(update(SysRole).where(SysRole.code == "manager").values(is_active=False))
        bump_policy_version(session.connection())
    with db.session_factory()() as session:
        principal = load_principal(session.connection(), session.get(SysUser, user.id))
    assert not principal.permissions


def test_permission_set_equals_casbin_enforce(make_user: Any) -> None:
    """The set read from Casbin's implicit permissions answers exactly as ``enforce`` for every pair."""
    from crm_admin.core.permissions import ACTIONS, RESOURCES, Gate, user_subject

    users = [make_user(f"e{i}", roles).id for i, roles in enumerate(
        (["manager"], ["readonly"], ["sales_lead"], ["manager", "readonly"], []))]
    gate = Gate()
    with db.get_engine().connect() as conn:
        for uid in [1, *users]:
            grants = gate.grants(conn, uid)
            enforcer = gate._enforcer
            assert enforcer is not None
            expected = {(r, a) for r in RESOURCES for a in ACTIONS if enforcer.enforce(user_subject(uid), r, a)}
            assert set(grants.permissions) == expected, uid
