"""Customer care (客户关怀): generated tasks, the manager's workbench, execution and feedback.

The closed loop of the requirements: a task is created (birthday scan, care plan, or by hand), the
manager executes it (care type, time, detail), later records the customer's feedback and closes it
as ``done`` or ``cancelled``. Generated tasks carry a unique ``task_key`` so that a job run twice,
concurrently or after a crash never creates one twice. Services never commit.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    String,
    and_,
    bindparam,
    case,
    cast,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.orm import Session

from crm_admin.accounts.models import SysUser
from crm_admin.care.models import CARE_STATUSES, CarePlan, CareTaskDayTotal, CustomerCare
from crm_admin.contacts.models import Linkman
from crm_admin.contacts.service import birthday_keys, check_linkman_of
from crm_admin.core import audit, notify, search, totals
from crm_admin.core.errors import Forbidden, NotFound, UserError
from crm_admin.core.formatting import to_local
from crm_admin.core.i18n import Labels
from crm_admin.core.principal import Principal
from crm_admin.core.scope import (
    in_scope,
    owner_clause,
    scoped,
    sees_everyone,
    sees_several_users,
)
from crm_admin.customers.models import Customer, by_customer_manager
from crm_admin.db import utcnow
from crm_admin.dictionary import service as dictionary

CARE_STATUS_LABELS = Labels({"pending": "待执行", "done": "已完成", "cancelled": "已取消"})


def care_status_label(status: str, *, executed: bool) -> str:
    """A pending task already carried out is waiting for the customer's feedback, not still to do."""
    if status == "pending" and executed:
        return "已执行,待反馈"
    return CARE_STATUS_LABELS.get(status, status)


BIRTHDAY_CARE_TYPE = "birthday"  # dictionary care_type value labelled 生日祝福
DETAIL_MAX = 2000
FEEDBACK_MAX = 2000


# ----- generated tasks (jobs) ------------------------------------------------------------------

def _insert_ignoring_duplicates(session: Session, table: Any, columns: list[str], select_stmt: Any) -> int:
    """INSERT … SELECT that skips rows whose unique key already exists (a concurrent or repeated run)."""
    dialect = session.get_bind().dialect.name
    if dialect in ("mysql", "mariadb"):
        stmt: Any = mysql.insert(table).from_select(columns, select_stmt)
        stmt = stmt.prefix_with("IGNORE")
    elif dialect == "sqlite":
        stmt = sqlite.insert(table).from_select(columns, select_stmt).on_conflict_do_nothing()
    else:  # PostgreSQL and others

        stmt = postgresql.insert(table).from_select(columns, select_stmt).on_conflict_do_nothing()
    return _affected(session.execute(stmt))


def fill_birthday_md(session: Session) -> int:
    """Repair ``birthday_md`` for rows written around the ORM (bulk imports): keeps the scan complete."""
    md = func.extract("month", Linkman.birthday) * 100 + func.extract("day", Linkman.birthday)
    return _affected(session.execute(
        update(Linkman)
        .where(Linkman.birthday.is_not(None), Linkman.birthday_md.is_(None))
        .values(birthday_md=md)
        .execution_options(synchronize_session=False)
    ))


def scan_birthdays(session: Session, today: dt.date) -> int:
    """One pending 生日祝福 task per linkman celebrating ``today``, for the customer's current manager."""
    fill_birthday_md(session)
    key = (
        literal("birthday:") + cast(Linkman.id, String) + literal(":" + today.isoformat())
    )
    now = utcnow()
    src = (
        select(
            Linkman.customer_id,
            Linkman.id,
            literal(BIRTHDAY_CARE_TYPE),
            literal(today),
            literal("pending"),
            Customer.manager_id,
            literal("birthday"),
            key,
            literal(now, type_=CustomerCare.__table__.c.created_at.type),
            literal(now, type_=CustomerCare.__table__.c.updated_at.type),
            # the task carries its customer's manager (customers.models.CarriesCustomerManager); on MariaDB
            # the INSERT … SELECT reads the customers with shared locks, so no transfer slips in between
            Customer.manager_id,
        )
        .join(Customer, Customer.id == Linkman.customer_id)
        # a customer in a public pool has nobody to call: its birthdays wait until someone claims it
        .where(Linkman.birthday_md.in_(birthday_keys(today)), Customer.status != "lost", Customer.pool_id.is_(None))
    )
    created = _insert_ignoring_duplicates(
        session, CustomerCare.__table__,
        ["customer_id", "linkman_id", "care_type", "due_date", "status", "manager_id", "origin",
         "task_key", "created_at", "updated_at", "customer_manager_id"],
        src,
    )
    if created:  # the rows came from one statement: today's counts are counted again
        totals.recount(session.connection(), CustomerCare, lambda t: t.c.due_date == today)
    if created:
        audit.record(session, "create", resource="customer_care",
                     detail=f"生日扫描:{today.isoformat()} 生成 {created} 条生日关怀任务")
    return created


def create_plan_tasks(session: Session, today: dt.date) -> int:
    """Due care plans create their task (key ``plan:<id>:<date>``) and move to their next date.

    One locking read of the due plans (skipping rows another process holds), one bulk insert that
    skips existing keys, one bulk update of the plans' next dates, one summary audit row.
    """
    plans = session.execute(
        select(CarePlan.id, CarePlan.customer_id, CarePlan.linkman_id, CarePlan.care_type, CarePlan.next_date,
               CarePlan.interval_days, Customer.manager_id, Customer.status)
        .join(Customer, Customer.id == CarePlan.customer_id)
        # a customer in a public pool has nobody to care for it: its plans wait, unmoved, and the first
        # run after a claim creates one task for what was missed (as after downtime)
        .where(CarePlan.is_active.is_(True), CarePlan.next_date <= today, Customer.pool_id.is_(None))
        .order_by(CarePlan.id)
        .with_for_update(of=CarePlan, skip_locked=_supports_skip_locked(session))
    ).all()
    if not plans:
        return 0
    now = utcnow()
    tasks = []
    moves = []
    for p in plans:
        due: dt.date = p.next_date
        if p.status != "lost":
            tasks.append({
                "customer_id": p.customer_id, "linkman_id": p.linkman_id, "care_type": p.care_type,
                "due_date": due, "status": "pending", "manager_id": p.manager_id, "origin": "plan",
                "plan_id": p.id, "task_key": f"plan:{p.id}:{due.isoformat()}", "created_at": now, "updated_at": now,
            })
        # after downtime, one task for the missed occurrence and the plan moves past today
        step = max(int(p.interval_days or 1), 1)
        missed = (today - due).days // step + 1
        moves.append({"pid": p.id, "next": due + dt.timedelta(days=step * missed), "now": now})
    # each task carries its customer's manager (customers.models.CarriesCustomerManager), read with shared
    # locks so that no transfer slips in between
    carried = dict(session.execute(
        select(Customer.id, Customer.manager_id).where(Customer.id.in_(sorted({t["customer_id"] for t in tasks})))
        .order_by(Customer.id).with_for_update(read=True)
    ).tuples().all()) if tasks else {}
    for task in tasks:
        task["customer_manager_id"] = carried.get(task["customer_id"])
    created = 0
    table: Any = CustomerCare.__table__
    if session.get_bind().dialect.name == "sqlite":
        insert_stmt: Any = sqlite.insert(table).on_conflict_do_nothing()
    else:
        insert_stmt = mysql.insert(table).prefix_with("IGNORE")
    for start in range(0, len(tasks), 2000):
        created += _affected(session.execute(insert_stmt, tasks[start:start + 2000]))
    if created:  # inserted many at once (some may have existed): their days are counted again
        days = sorted({t["due_date"] for t in tasks})
        totals.recount(session.connection(), CustomerCare, lambda t: t.c.due_date.in_(days))
    plan_table: Any = CarePlan.__table__
    session.execute(
        update(plan_table).where(plan_table.c.id == bindparam("pid"))
        .values(next_date=bindparam("next"), updated_at=bindparam("now")),
        moves,
    )
    audit.record(session, "create", resource="customer_care",
                 changes={"plans": len(plans), "tasks": created},
                 detail=f"关怀计划:{today.isoformat()} 生成 {created} 条任务,{len(plans)} 个计划顺延")
    return created


# ----- notifications ---------------------------------------------------------------------------

NOTIFY_NAMES = 10  # names listed in one notification; the rest are counted


def _names(rows: list[Any]) -> str:
    shown = [f"{r.customer_name} · {r.linkman_name}" if r.linkman_name else str(r.customer_name)
             for r in rows[:NOTIFY_NAMES]]
    more = f"\n……等共 {len(rows)} 条" if len(rows) > NOTIFY_NAMES else ""
    return "\n".join(f"- {name}" for name in shown) + more


def notify_tasks_due(session: Session, today: dt.date, *, origin: str) -> int:
    """Each manager with tasks of ``origin`` due ``today`` is told which (one notification per manager
    and day, however often the job runs): the morning's birthday tasks reach the manager's channels."""
    rows = session.execute(
        select(CustomerCare.manager_id, Customer.name.label("customer_name"), Linkman.name.label("linkman_name"))
        .join(Customer, Customer.id == CustomerCare.customer_id)
        .outerjoin(Linkman, Linkman.id == CustomerCare.linkman_id)
        .where(CustomerCare.due_date == today, CustomerCare.status == "pending", CustomerCare.origin == origin,
               CustomerCare.manager_id.is_not(None))
        .order_by(CustomerCare.manager_id, CustomerCare.id)
    ).all()
    by_manager: dict[int, list[Any]] = {}
    for row in rows:
        by_manager.setdefault(row.manager_id, []).append(row)
    what = "生日关怀" if origin == "birthday" else "关怀计划"
    written = 0
    for manager_id, tasks in by_manager.items():
        written += notify.notify(
            session, "care_due", [manager_id], f"今天有 {len(tasks)} 条{what}任务待执行", _names(tasks),
            notify.Link("admin:view-care-workbench"), dedupe_key=f"care_due:{origin}:{today.isoformat()}")
    return written


def notify_overdue_tasks(session: Session, today: dt.date) -> int:
    """Each manager with pending tasks due before ``today`` is reminded once a day (a count)."""
    counts = session.execute(
        select(CustomerCare.manager_id, func.count())
        .where(CustomerCare.status == "pending", CustomerCare.due_date < today, CustomerCare.manager_id.is_not(None))
        .group_by(CustomerCare.manager_id)
    ).tuples().all()
    written = 0
    for manager_id, count in counts:
        written += notify.notify(
            session, "care_overdue", [manager_id], f"有 {count} 条关怀任务已逾期", "请尽快在关怀工作台执行或取消。",
            notify.Link("admin:view-care-workbench"), dedupe_key=f"care_overdue:{today.isoformat()}")
    return written


def realign_pending_tasks(session: Session) -> int:
    """Hand every pending task whose manager is not its customer's current manager to that manager.

    The application keeps them in step on every path (``core.customer_records.hand_over_open_work``); this
    repairs rows written around it (SQL by hand, an old backup restored) so that a department's
    workbench, which finds pending tasks by manager, misses none. Audited when anything moved.
    """
    current = select(Customer.manager_id).where(Customer.id == CustomerCare.customer_id).scalar_subquery()
    where = and_(CustomerCare.status == "pending", CustomerCare.manager_id.is_distinct_from(current))
    with totals.updating(session.connection(), CustomerCare, where):  # the counts per manager follow
        moved = _affected(session.execute(
            update(CustomerCare).where(where).values(manager_id=current, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        ))
    if moved:
        audit.record(session, "update", resource="customer_care", changes={"realigned": moved},
                     detail=f"{moved} 条待办关怀任务交给客户当前的客户经理")
    return moved


def _supports_skip_locked(session: Session) -> bool:
    return session.get_bind().dialect.name not in ("sqlite",)


# ----- the workbench ---------------------------------------------------------------------------

@dataclass
class TaskRow:
    id: int
    customer_id: int
    customer: str
    linkman: str
    care_type: str
    care_type_label: str
    due_date: dt.date | None
    care_time: dt.datetime | None
    detail: str
    feedback: str
    status: str
    origin: str
    manager: str

    @property
    def executed(self) -> bool:
        return self.care_time is not None


def _task_select(principal: Principal) -> Any:
    # the columns a row shows, not whole CustomerCare objects: sixty rows a page, each otherwise built
    # into an ORM object with its unused timestamps converted
    stmt = (
        select(CustomerCare.id, CustomerCare.customer_id, CustomerCare.care_type, CustomerCare.due_date,
               CustomerCare.care_time, CustomerCare.detail, CustomerCare.feedback, CustomerCare.status,
               CustomerCare.origin, Customer.name.label("customer"), Linkman.name.label("linkman"),
               SysUser.real_name, SysUser.username)
        .join(Customer, Customer.id == CustomerCare.customer_id)
        .outerjoin(Linkman, Linkman.id == CustomerCare.linkman_id)
        .outerjoin(SysUser, SysUser.id == CustomerCare.manager_id)
    )
    return scoped(stmt, CustomerCare, principal, "list")


def _rows(session: Session, stmt: Any) -> list[TaskRow]:
    return [
        TaskRow(
            id=r.id, customer_id=r.customer_id, customer=r.customer, linkman=r.linkman or "",
            care_type=r.care_type, care_type_label=dictionary.label("care_type", r.care_type),
            due_date=r.due_date, care_time=r.care_time, detail=r.detail or "", feedback=r.feedback or "",
            status=r.status, origin=r.origin, manager=r.real_name or r.username or "",
        )
        for r in session.execute(stmt)
    ]


WORKBENCH_PAGE_SIZE = 20
WORKBENCH_SECTIONS = ("today", "overdue", "upcoming")


@dataclass
class TaskPage:
    """One page of a workbench section, with the section's full count."""

    rows: list[TaskRow]
    total: int
    page: int
    page_size: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.page_size))


@dataclass
class Workbench:
    today: TaskPage
    overdue: TaskPage
    upcoming: TaskPage
    recent: list[TaskRow]


def pending_scope(principal: Principal) -> Any:
    """Where a scope's pending tasks are: with their managers.

    A pending task always belongs to its customer's current manager: every path that changes a
    customer's manager hands the pending tasks over in the same transaction (``hand_over_open_work``) and
    the daily plan job realigns any stray one (``realign_pending_tasks``). So "pending tasks of the
    customers in scope" is "pending tasks of the managers in scope", which the (manager_id, status,
    due_date) index answers without walking every customer of a department. Rows are still loaded
    through the customer scope (``_task_select``): a task that was ever out of step is left out,
    never shown to the wrong people.
    """
    if sees_everyone(principal, "customer_care", "list"):
        return None
    return owner_clause(CustomerCare.manager_id, principal, resource="customer_care", action="list")


def workbench(
    session: Session, principal: Principal, today: dt.date, *, manager_id: int | None = None,
    pages: dict[str, int] | None = None, page_size: int = WORKBENCH_PAGE_SIZE, upcoming_days: int = 7,
    recent: int = 20,
) -> Workbench:
    """Pending tasks due today, overdue and coming up (one page of each, with the full counts), plus the
    ``recent`` latest closed ones, within scope."""
    pending = _pending_select(principal, manager_id)
    conditions = {
        "today": (CustomerCare.due_date == today,),
        "overdue": (CustomerCare.due_date < today,),
        "upcoming": (CustomerCare.due_date > today,
                     CustomerCare.due_date <= today + dt.timedelta(days=upcoming_days)),
    }
    wanted = pages or {}
    base = select(CustomerCare.id).where(CustomerCare.status == "pending")
    if (where_scope := pending_scope(principal)) is not None:
        base = base.where(where_scope)
    if manager_id:
        base = base.where(CustomerCare.manager_id == manager_id)
    horizon = today + dt.timedelta(days=upcoming_days)
    # the three counts from the pending tasks counted per day and manager (``CareTaskDayTotal``, kept in
    # the transaction of every write): the scope's pending groups up to the horizon (everyone's: ~2,700
    # rows) instead of its pending tasks (everyone's: 60,000)
    totals = dict.fromkeys(conditions, 0)
    kept = CareTaskDayTotal
    per_day = select(kept.due_date, func.sum(kept.task_count)).where(
        kept.status == "pending", kept.due_date <= horizon).group_by(kept.due_date)
    if where_scope is not None:  # the managers of the scope, as ``pending_scope``
        per_day = per_day.where(owner_clause(kept.manager_id, principal, resource="customer_care", action="list"))
    if manager_id:
        per_day = per_day.where(kept.manager_id == manager_id)
    for due, n in session.execute(per_day):
        assert due is not None  # compared with the horizon: never NULL
        totals["today" if due == today else "overdue" if due < today else "upcoming"] += int(n)
    chosen = {name: min(max(1, wanted.get(name, 1)), max(1, -(-total // page_size))) for name, total in totals.items()}
    page_ids = _page_ids(session, base, conditions, totals, chosen, page_size, horizon,
                         everyone=where_scope is None)
    # only the pages' rows are read with their joins (and through the customer scope)
    every_id = [i for ids in page_ids.values() for i in ids]
    by_id = {r.id: r for r in _rows(session, pending.where(CustomerCare.id.in_(every_id)))} if every_id else {}
    sections = {
        name: TaskPage(sorted((by_id[i] for i in ids if i in by_id), key=lambda r: (r.due_date, r.id)),
                       totals[name], chosen[name], page_size)
        for name, ids in page_ids.items()
    }
    return Workbench(
        today=sections["today"], overdue=sections["overdue"], upcoming=sections["upcoming"],
        recent=_recent_closed(session, principal, manager_id, recent) if recent > 0 else [],
    )


def _page_ids(session: Session, base: Any, conditions: dict[str, tuple[Any, ...]], totals: dict[str, int],
              chosen: dict[str, int], page_size: int, horizon: dt.date, *, everyone: bool) -> dict[str, list[int]]:
    """The ids on each section's chosen page."""
    order = (CustomerCare.due_date, CustomerCare.id)
    page_ids: dict[str, list[int]] = {name: [] for name in conditions}
    if everyone:
        # everyone's: each section's page straight from the (status, due_date) index
        for name, where in conditions.items():
            if totals[name]:
                page_ids[name] = list(session.execute(base.where(*where).order_by(*order)
                                                      .offset((chosen[name] - 1) * page_size)
                                                      .limit(page_size)).scalars())
    elif any(totals.values()):
        # a scope's: one pass over its pending tasks, numbered within each section, keeps each page's ids
        section = case(*((and_(*where), name) for name, where in conditions.items()), else_="")
        numbered = base.with_only_columns(
            CustomerCare.id, section.label("section"),
            func.row_number().over(partition_by=section, order_by=order).label("n"),
        ).where(CustomerCare.due_date <= horizon).subquery()
        wanted_rows = or_(*(and_(numbered.c.section == name,
                                 numbered.c.n > (chosen[name] - 1) * page_size,
                                 numbered.c.n <= chosen[name] * page_size)
                            for name in conditions if totals[name]))
        for task_id, name in session.execute(select(numbered.c.id, numbered.c.section).where(wanted_rows)):
            page_ids[name].append(task_id)
    return page_ids


def _pending_select(principal: Principal, manager_id: int | None) -> Any:
    stmt = _task_select(principal).where(CustomerCare.status == "pending")
    if (where_scope := pending_scope(principal)) is not None:
        stmt = stmt.where(where_scope)
    return stmt.where(CustomerCare.manager_id == manager_id) if manager_id else stmt


def due_today(
    session: Session, principal: Principal, today: dt.date, *, manager_id: int | None = None, limit: int = 200,
) -> list[TaskRow]:
    """Pending tasks due ``today`` within scope (the dashboard needs only these, not the whole workbench)."""
    stmt = _pending_select(principal, manager_id).where(CustomerCare.due_date == today)
    return _rows(session, stmt.order_by(CustomerCare.due_date, CustomerCare.id).limit(limit))


RECENT_SCAN_CHUNKS = (200, 800, 3200)  # rows of the newest-closed scan read per round for wide scopes


def _recent_closed(session: Session, principal: Principal, manager_id: int | None, limit: int) -> list[TaskRow]:
    """The latest closed tasks: their ids first, from customer_care alone, then the display joins.

    With the joins in the same statement MariaDB drives from customer and filesorts all 800k care rows
    (36 s on the admin dashboard); alone, the ids come from a backward scan of ix_customer_care_updated_at.
    For a scope of several managers (a department) driving from its customers walks tens of thousands of
    index entries: the newest closed tasks are read in growing chunks instead and kept when their customer
    is in scope, falling back to the customer-driven read when the scope is too thin to fill the list.
    """
    newest = (CustomerCare.updated_at.desc(), CustomerCare.id.desc())
    ids: list[int] | None = None
    if (manager_id is None and not sees_everyone(principal, "customer_care", "list")
            and sees_several_users(principal, "customer_care", "list")):
        ids = _recent_closed_by_scan(session, principal, limit)
    if ids is None:
        # found by the manager each task carries (its customer's): one manager's newest are the end of one
        # range of the (customer_manager_id, updated_at) index, where the customer scope reads every task
        # of the manager's 5,000 customers; the rows shown are read through the customer scope below
        ids_stmt = by_customer_manager(select(CustomerCare.id).where(CustomerCare.status != "pending"), CustomerCare,
                                       principal, "list")
        if manager_id:
            ids_stmt = ids_stmt.where(CustomerCare.manager_id == manager_id)
        ids = list(session.execute(ids_stmt.order_by(*newest).limit(limit)).scalars())
    if not ids:
        return []
    return _rows(session, _task_select(principal).where(CustomerCare.id.in_(ids)).order_by(*newest))


def _recent_closed_by_scan(session: Session, principal: Principal, limit: int) -> list[int] | None:
    """Newest closed task ids whose customer is in scope, scanning all closed tasks newest first; None
    when the first few thousand rows do not hold ``limit`` of them (the caller then asks the other way)."""
    found: list[int] = []
    after: tuple[dt.datetime, int] | None = None
    for chunk in RECENT_SCAN_CHUNKS:
        stmt = select(CustomerCare.id, CustomerCare.customer_id, CustomerCare.updated_at).where(
            CustomerCare.status != "pending")
        if after is not None:
            stmt = stmt.where(or_(CustomerCare.updated_at < after[0],
                                  and_(CustomerCare.updated_at == after[0], CustomerCare.id < after[1])))
        rows = session.execute(
            stmt.order_by(CustomerCare.updated_at.desc(), CustomerCare.id.desc()).limit(chunk)).all()
        if rows:
            mine = set(session.execute(scoped(
                select(Customer.id).where(Customer.id.in_({r.customer_id for r in rows})), Customer, principal,
                "list", resource="customer_care")
            ).scalars())
            found.extend(r.id for r in rows if r.customer_id in mine)
        if len(found) >= limit or len(rows) < chunk:
            return found[:limit]
        after = (rows[-1].updated_at, rows[-1].id)
    return None


@dataclass
class Completion:
    manager_id: int | None
    manager: str
    total: int
    done: int
    cancelled: int
    pending: int
    overdue: int

    @property
    def rate(self) -> float:
        """Done among the tasks that were not cancelled (0 when there were none)."""
        base = self.total - self.cancelled
        return round(self.done * 100.0 / base, 1) if base else 0.0


def _by_assignee(stmt: Any, principal: Principal) -> Any:
    """Counts of tasks by the managers the principal sees (everyone's for an unlimited scope)."""
    return stmt if sees_everyone(principal, "customer_care", "list") else stmt.where(
        owner_clause(CustomerCare.manager_id, principal, resource="customer_care", action="list"))


def completion_by_manager(
    session: Session, principal: Principal, date_from: dt.date, date_to: dt.date, today: dt.date
) -> list[Completion]:
    """Care completion per manager for tasks due in [date_from, date_to], for the managers in scope.

    A task counts for the manager it was assigned to: a task done before its customer was transferred
    stays to the credit of the manager who did it (pending tasks move with the customer). Only counts
    leave this function, never rows, and only managers with tasks in the period have a line.

    Read from the tasks counted per status, day and manager (``CareTaskDayTotal``, kept in the
    transaction of every write): everyone's 30 days are ~16,000 such groups instead of 100,000 tasks
    (25 ms on MariaDB); a scope of some managers reads one range per manager and status.
    """
    kept = CareTaskDayTotal
    pending = kept.status == "pending"
    n = kept.task_count
    # every status there is, each a range of the primary key: the known ones, and any other a row
    # written around the application has (its ranges between the known ones are empty, so this reads
    # nothing; a DISTINCT over the primary key's first column would read every group)
    statuses = list(CARE_STATUSES)
    if session.execute(select(kept.status).where(kept.status.not_in(statuses)).limit(1)).first() is not None:
        statuses = sorted({*statuses, *session.execute(select(kept.status).distinct()).scalars()})
    stmt = (select(kept.manager_id, func.sum(n), *(func.sum(case((where, n), else_=0)) for where in (
                kept.status == "done", kept.status == "cancelled", pending, and_(pending, kept.due_date < today))))
            .where(kept.status.in_(statuses), kept.due_date >= date_from, kept.due_date <= date_to)
            .group_by(kept.manager_id))
    if not sees_everyone(principal, "customer_care", "list"):
        stmt = stmt.where(owner_clause(kept.manager_id, principal, resource="customer_care", action="list"))
    # ``manager_id`` 0: tasks assigned to nobody
    groups = [(mid or None, *rest) for mid, *rest in session.execute(stmt).all()]
    ids = [mid for mid, *_counts in groups if mid is not None]
    names = {uid: real or user for uid, real, user in session.execute(
        select(SysUser.id, SysUser.real_name, SysUser.username).where(SysUser.id.in_(ids)))} if ids else {}
    out = [
        Completion(mid, names.get(mid) or "未分配", int(total), int(done or 0), int(canc or 0), int(pend or 0),
                   int(over or 0))
        for mid, total, done, canc, pend, over in groups
    ]
    return sorted(out, key=lambda c: (-c.rate, c.manager))


def completion_totals(session: Session, principal: Principal, date_from: dt.date, date_to: dt.date) -> tuple[int, int]:
    """(done, due but not cancelled) for tasks due in [date_from, date_to] of the managers in scope: the
    overall rate without the per-manager grouping (see ``completion_by_manager``)."""
    stmt = _by_assignee(select(
        func.coalesce(func.sum(case((CustomerCare.status == "done", 1), else_=0)), 0),
        func.coalesce(func.sum(case((CustomerCare.status != "cancelled", 1), else_=0)), 0),
    ).where(CustomerCare.due_date >= date_from, CustomerCare.due_date <= date_to), principal)
    done, base = session.execute(stmt).one()
    return int(done), int(base)


# ----- writes ----------------------------------------------------------------------------------

def _editable_task(session: Session, principal: Principal, care_id: int) -> CustomerCare:
    if not principal.can("customer_care", "edit"):
        raise Forbidden("您没有处理客户关怀的权限。")
    care = session.execute(
        scoped(select(CustomerCare).where(CustomerCare.id == care_id), CustomerCare, principal,
               "edit").with_for_update()
    ).scalar_one_or_none()
    if care is None:
        raise NotFound("关怀任务不存在或您无权访问。")
    return care


def _care_type(value: str | None, current: str | None = None) -> str:
    value = (value or "").strip()
    if not value:
        raise UserError("请选择关怀类型。", field="care_type")
    if not dictionary.is_valid("care_type", value, current=current):
        raise UserError("关怀类型无效,请从下拉列表中选择。", field="care_type")
    return value


def _text(value: str | None, *, label: str, maximum: int, required: bool, field: str) -> str | None:
    text = (value or "").strip()
    if required and not text:
        raise UserError(f"请填写{label}。", field=field)
    if len(text) > maximum:
        raise UserError(f"{label}不能超过 {maximum} 个字。", field=field)
    return text or None


def _care_time(value: dt.datetime | None) -> dt.datetime:
    now = utcnow()
    if value is None:
        return now
    if value > now + dt.timedelta(minutes=5):
        raise UserError("关怀时间不能晚于现在。", field="care_time")
    return value


def execute_care(
    session: Session, principal: Principal, care_id: int, *, care_type: str | None,
    care_time: dt.datetime | None, detail: str | None,
) -> CustomerCare:
    """Record the care given (type, time, detail); the task stays pending until the feedback."""
    care = _editable_task(session, principal, care_id)
    if care.status != "pending":
        raise UserError("该关怀任务已结束,不能再执行。")
    care.care_type = _care_type(care_type, care.care_type)
    care.care_time = _care_time(care_time)
    care.detail = _text(detail, label="关怀内容", maximum=DETAIL_MAX, required=True, field="detail")
    session.flush()
    return care


def record_feedback(
    session: Session, principal: Principal, care_id: int, *, feedback: str | None, status: str,
) -> CustomerCare:
    """Close the loop: the customer's feedback, and the task ``done`` (or ``cancelled``)."""
    if status not in ("done", "cancelled"):
        raise UserError("请选择处理结果:已完成或已取消。", field="status")
    care = _editable_task(session, principal, care_id)
    if care.status != "pending":
        raise UserError("该关怀任务已结束。")
    if status == "done" and care.care_time is None:
        raise UserError("请先执行关怀(记录关怀内容),再记录客户反馈。")
    label = "客户反馈" if status == "done" else "取消原因"
    care.feedback = _text(feedback, label=label, maximum=FEEDBACK_MAX, required=True, field="feedback")
    care.status = status
    session.flush()
    return care


def create_manual_care(
    session: Session, principal: Principal, *, customer_id: int | None, linkman_id: int | None,
    care_type: str | None, care_time: dt.datetime | None, detail: str | None, feedback: str | None = None,
) -> CustomerCare:
    """A care record entered by hand: ``done`` when the feedback is known, else pending it."""
    if not principal.can("customer_care", "create"):
        raise Forbidden("您没有新增客户关怀的权限。")
    if not customer_id or not in_scope(session, Customer, customer_id, principal, "create", resource="customer_care"):
        raise UserError("请选择您负责的客户。", field="customer_id")
    customer = session.get(Customer, customer_id)
    assert customer is not None
    check_linkman_of(session, customer_id, linkman_id, field="linkman_id")
    when = _care_time(care_time)
    text_feedback = _text(feedback, label="客户反馈", maximum=FEEDBACK_MAX, required=False, field="feedback")
    care = CustomerCare(
        customer_id=customer_id, linkman_id=linkman_id or None, care_type=_care_type(care_type),
        care_time=when, due_date=to_local(when).date(),  # the company's day, not UTC's
        detail=_text(detail, label="关怀内容", maximum=DETAIL_MAX, required=True, field="detail"),
        feedback=text_feedback, status="done" if text_feedback else "pending",
        # pending: the customer's manager's task (see pending_scope); done: credited to its author if unassigned
        manager_id=customer.manager_id if not text_feedback else customer.manager_id or principal.id,
        origin="manual",
    )
    session.add(care)
    session.flush()
    return care


def linkmen_of(session: Session, principal: Principal, customer_id: int) -> list[tuple[int, str]]:
    stmt = scoped(select(Linkman.id, Linkman.name).where(Linkman.customer_id == customer_id), Linkman, principal,
                  "create", resource="customer_care")
    return [(i, n) for i, n in session.execute(stmt.order_by(Linkman.is_primary.desc(), Linkman.name)).all()]


def search_customers(session: Session, principal: Principal, term: str, limit: int = 20) -> list[tuple[int, str]]:
    stmt = scoped(select(Customer.id, Customer.code, Customer.name), Customer, principal, "create",
                  resource="customer_care")
    found = search.match(session.connection(), Customer, term)  # any part, pinyin, digits, a code's start
    if found is not None:
        stmt = stmt.where(found)
    return [(i, f"{c} {n}") for i, c, n in session.execute(stmt.order_by(Customer.name).limit(limit)).all()]


def _affected(result: Any) -> int:
    """Rows matched by an UPDATE/INSERT (``CursorResult.rowcount``)."""
    return int(getattr(result, "rowcount", 0) or 0)
