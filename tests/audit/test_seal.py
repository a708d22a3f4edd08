"""The audit log's hash chain, built by the sealer after the commit.

Business transactions write their audit rows unsealed and lock nothing shared for them; the sealer
chains the committed rows in the order it seals them (``seal_seq``). These tests cover: rows chained
only by the sealer; a row committed late (a lower id than rows already sealed) sealed later and
verifying; tampering (an edited row, a removed row, the last sealed rows removed); the unsealed tail
(normal when recent, a warning when the sealing job is not running); two sealers at once; and, on
MariaDB, writers that overlap without waiting for each other (nor for the sealer).
"""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import pytest
from sqlalchemy import func, select, text, update

from crm_admin import db
from tests.conftest import IS_MYSQL, statements_sent


def _audit() -> Any:
    from crm_admin.audit.models import AuditLog

    return AuditLog.__table__


def _write(n: int, detail: str = "封存测试") -> None:
    from crm_admin.core import audit

    for i in range(n):
        audit.record_now("export", resource="customer", detail=f"{detail} {i}")


def _seal() -> Any:
    from crm_admin.core import audit

    with db.get_engine().connect() as conn:
        return audit.seal_pending(conn)


def _verify() -> Any:
    from crm_admin.core import audit

    with db.get_engine().connect() as conn:
        return audit.verify_chain(conn)


def _sealed_rows() -> list[Any]:
    t = _audit()
    with db.get_engine().connect() as conn:
        return list(conn.execute(select(t).where(t.c.seal_seq.is_not(None)).order_by(t.c.seal_seq)).mappings())


def test_rows_are_written_unsealed_and_chained_by_the_sealer() -> None:
    t = _audit()
    _write(3)
    with db.get_engine().connect() as conn:
        unsealed = conn.execute(select(t.c.hash, t.c.prev_hash, t.c.seal_seq)
                                .where(t.c.detail.like("封存测试%"))).all()
    assert unsealed and all(row == (None, None, None) for row in unsealed)
    before = _verify()
    assert before.intact and before.unsealed >= 3 and not before.sealing_stalled

    result = _seal()
    assert result.sealed == before.unsealed and result.head_seq == before.checked + before.unsealed
    rows = _sealed_rows()
    assert [r["seal_seq"] for r in rows] == list(range(1, len(rows) + 1))
    assert [r["prev_hash"] for r in rows[1:]] == [r["hash"] for r in rows[:-1]] and rows[0]["prev_hash"] == ""
    after = _verify()
    assert after.intact and after.unsealed == 0 and after.checked == len(rows) == after.head_seq
    assert _seal().sealed == 0  # nothing left: a pass with nothing to do changes nothing


def test_a_row_committed_late_with_a_lower_id_is_sealed_later_and_verifies() -> None:
    """Ids are handed out at insert (on a cluster, interleaved between nodes): a transaction that
    commits last may hold the lowest id. Simulated with explicit ids on any database."""
    from crm_admin.core import audit

    t = _audit()
    _write(2)
    _seal()
    with db.get_engine().connect() as conn:
        top = int(conn.execute(select(func.max(t.c.id))).scalar_one())
    audit_ids = (top + 20, top + 10)  # the higher id commits first
    for rid in audit_ids:
        with db.get_engine().begin() as conn:
            audit.write_entries(conn, [audit.Entry("export", "customer", detail=f"晚到 {rid}")])
            conn.execute(update(t).where(t.c.detail == f"晚到 {rid}").values(id=rid))
        _seal()
    rows = {r["id"]: r for r in _sealed_rows()}
    assert rows[top + 10]["seal_seq"] == rows[top + 20]["seal_seq"] + 1  # chained in seal order, not id order
    report = _verify()
    assert report.intact and report.unsealed == 0


@pytest.mark.skipif(not IS_MYSQL, reason="two open write transactions need MariaDB")
def test_an_open_transaction_does_not_hold_up_the_sealer_and_is_sealed_after_it_commits() -> None:
    from crm_admin.core import audit

    t = _audit()
    engine = db.get_engine()
    with engine.connect() as slow:
        slow.execute(text("SET SESSION innodb_lock_wait_timeout = 2"))
        audit.write_entries(slow, [audit.Entry("export", "customer", detail="先写后提交")])
        slow_id = slow.execute(select(t.c.id).where(t.c.detail == "先写后提交")).scalar_one()
        _write(2, "后写先提交")
        with engine.connect() as sealer:
            sealer.execute(text("SET SESSION innodb_lock_wait_timeout = 1"))
            first = audit.seal_pending(sealer)  # does not wait for the open transaction
        assert first.sealed >= 2
        slow.commit()
    _seal()
    rows = {r["id"]: r for r in _sealed_rows()}
    later = [r for r in rows.values() if (r["detail"] or "").startswith("后写先提交")]
    assert all(r["id"] > slow_id for r in later)
    assert rows[slow_id]["seal_seq"] > max(r["seal_seq"] for r in later)
    assert _verify().intact


@pytest.mark.skipif(not IS_MYSQL, reason="row locks and lock waits: MariaDB")
def test_overlapping_writers_do_not_wait_for_each_other() -> None:
    """Two business transactions each writing audit rows (through the ORM flush, as every save does)
    and neither committed: the second neither waits nor fails (a lock wait of 1 s would raise)."""
    from crm_admin.core.context import Actor, acting_as
    from crm_admin.products.models import Product

    first = db.session_factory()()
    second = db.session_factory()()
    try:
        for s in (first, second):
            s.execute(text("SET SESSION innodb_lock_wait_timeout = 1"))
        with acting_as(Actor(user_id=None, username="writer-1")):
            first.add(Product(code="P-SEAL-1", name="并发写入一"))
            first.flush()  # its audit row is written now, the transaction stays open
        with acting_as(Actor(user_id=None, username="writer-2")):
            second.add(Product(code="P-SEAL-2", name="并发写入二"))
            second.flush()
            second.commit()
        first.commit()
    finally:
        first.close()
        second.close()
    _seal()
    report = _verify()
    assert report.intact and report.unsealed == 0
    t = _audit()
    with db.get_engine().connect() as conn:
        assert conn.execute(select(func.count()).where(t.c.resource == "product", t.c.action == "create")).scalar() == 2


@pytest.mark.parametrize("tamper", ["edit", "delete", "delete_last", "unseal"])
def test_tampering_with_sealed_rows_is_detected(tamper: str) -> None:
    t = _audit()
    _write(4)
    _seal()
    rows = _sealed_rows()
    victim, after = rows[-3], rows[-2]
    with db.get_engine().begin() as conn:
        if tamper == "edit":
            conn.execute(update(t).where(t.c.id == victim["id"]).values(detail="改过了"))
        elif tamper == "delete":
            conn.execute(t.delete().where(t.c.id == victim["id"]))
        elif tamper == "delete_last":
            conn.execute(t.delete().where(t.c.id.in_([rows[-1]["id"], rows[-2]["id"]])))
        else:  # made to look unsealed and changed: the sealer would chain it again at the end
            conn.execute(update(t).where(t.c.id == victim["id"])
                         .values(seal_seq=None, hash=None, prev_hash=None, detail="改过了"))
    report = _verify()
    assert not report.intact
    if tamper == "edit":
        assert (report.problem, report.broken_id, report.checked) == ("changed", victim["id"], len(rows) - 3)
    elif tamper in ("delete", "unseal"):
        assert (report.problem, report.broken_id, report.missing) == ("missing", after["id"], 1)
    else:
        assert (report.problem, report.missing, report.checked) == ("missing_end", 2, len(rows) - 2)
    # sealing goes on after it, and the evidence stays
    _write(1, "之后")
    _seal()
    again = _verify()
    if tamper == "delete_last":  # the numbers of the removed rows stay unused: now a gap before the new row
        assert (again.problem, again.missing) == ("missing", 2)
    else:
        assert again.problem == report.problem and again.broken_id == report.broken_id


def test_the_messages_say_what_was_found() -> None:
    from crm_admin.core.audit import ChainReport, describe_problem, describe_tail

    now = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    ok = ChainReport(checked=10, head_seq=10, now=now)
    assert "完整" in describe_problem(ok) and "10" in describe_problem(ok) and "无" in describe_tail(ok)
    assert "修改" in describe_problem(ChainReport(broken_id=7, problem="changed"))
    assert "删除" in describe_problem(ChainReport(broken_id=7, problem="missing", missing=1))
    assert "最后 3 条" in describe_problem(ChainReport(problem="missing_end", missing=3))
    recent = ChainReport(unsealed=4, oldest_unsealed_at=now - dt.timedelta(seconds=3), now=now)
    assert "4 条" in describe_tail(recent) and "3 秒前" in describe_tail(recent) and not recent.sealing_stalled
    stale = ChainReport(unsealed=4, oldest_unsealed_at=now - dt.timedelta(minutes=11), now=now)
    assert stale.sealing_stalled and "没有运行" in describe_tail(stale) and "11 分钟前" in describe_tail(stale)


def test_an_old_unsealed_tail_means_the_sealing_job_is_not_running() -> None:
    t = _audit()
    _seal()
    _write(2, "久未封存")
    with db.get_engine().begin() as conn:
        conn.execute(update(t).where(t.c.detail.like("久未封存%"))
                     .values(occurred_at=db.utcnow() - dt.timedelta(minutes=30)))
    report = _verify()
    assert report.intact and report.unsealed == 2 and report.sealing_stalled
    assert report.tail_age is not None and report.tail_age > dt.timedelta(minutes=29)
    _seal()
    assert not _verify().sealing_stalled


def test_sealers_running_at_once_seal_each_row_once() -> None:
    """Several sealers while writers write: every row ends with exactly one place in one chain."""
    from crm_admin.core import audit
    from crm_admin.core.audit import SealConflict

    errors: list[BaseException] = []
    stop = threading.Event()

    def sealer() -> None:
        while not stop.is_set():
            try:
                with db.get_engine().connect() as conn:
                    audit.seal_pending(conn, batch=3)
            except SealConflict:
                pass  # the other sealer won this batch: harmless, the next pass goes on
            except Exception as exc:  # a deadlock between sealers is harmless too
                if "1213" not in str(exc) and "locked" not in str(exc):
                    errors.append(exc)

    threads = [threading.Thread(target=sealer) for _ in range(3)]
    for th in threads:
        th.start()
    try:
        _write(30, "并发封存")
    finally:
        stop.set()
        for th in threads:
            th.join()
    assert not errors, errors
    _seal()
    rows = _sealed_rows()
    assert [r["seal_seq"] for r in rows] == list(range(1, len(rows) + 1))
    report = _verify()
    assert report.intact and report.unsealed == 0 and report.checked == len(rows)


def test_only_the_lease_holder_runs_the_sealing_job() -> None:
    from crm_admin.scheduler import service

    _write(2)
    ran, result = service.run_periodic("audit_seal", holder="node-a")
    assert ran and result.sealed >= 2
    _write(1)
    assert service.run_periodic("audit_seal", holder="node-b") == (False, None)  # node-a holds it
    ran, result = service.run_periodic("audit_seal", holder="node-a")  # renewed by its holder
    assert ran and result.sealed == 1
    later = db.utcnow() + dt.timedelta(minutes=5)  # node-a stopped renewing: the lease lapses
    _write(1)
    ran, result = service.run_periodic("audit_seal", holder="node-b", now=later)
    assert ran and result.sealed == 1
    service.release_periodic_leases("node-b")
    assert _verify().intact


def test_the_audit_list_shows_the_chain_and_its_unsealed_tail(admin_client: Any) -> None:
    t = _audit()
    _seal()
    page = admin_client.get("/admin/audit-log/list")
    assert page.status_code == 200
    status = page.text.split('id="audit-chain-status"', 1)[1].split("</div>", 1)[0]
    assert "哈希链:已封存" in status and "未封存的尾部" in status and "alert-warning" not in status
    _write(1, "久未封存")
    with db.get_engine().begin() as conn:
        conn.execute(update(t).where(t.c.detail.like("久未封存%"))
                     .values(occurred_at=db.utcnow() - dt.timedelta(hours=3)))
    stale = admin_client.get("/admin/audit-log/list")
    status = stale.text.split('id="audit-chain-status"', 1)[1].split("</div>", 1)[0]
    assert "alert-warning" in status and "没有运行" in status and "3 小时前" in status
    english = admin_client.get("/admin/audit-log/list?lang=en")
    status = english.text.split('id="audit-chain-status"', 1)[1].split("</div>", 1)[0]
    assert "Unsealed tail" in status and "the sealing job is not running" in status


def test_a_save_reads_and_locks_no_shared_row_for_its_audit_rows() -> None:
    """What an audited save sends: its own rows only (no sys_meta, no FOR UPDATE, no read of audit_log)."""

    from crm_admin.products.models import Product

    with statements_sent() as seen, db.transaction() as session:
        session.add(Product(code="P-SEAL-Q", name="只插入"))
    audit_sql = [s for s in seen if "audit_log" in s]
    assert len(audit_sql) == 1 and audit_sql[0].lstrip().upper().startswith("INSERT"), seen
    assert not [s for s in seen if "sys_meta" in s or "FOR UPDATE" in s.upper()], seen
