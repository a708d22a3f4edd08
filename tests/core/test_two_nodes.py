"""What keeps several app nodes right on one database (a Galera cluster, where a row lock taken by
SELECT … FOR UPDATE holds only on the node that took it): each check is decided by what the database
holds at the moment of the write — the version in the UPDATE's WHERE clause, the policy version
read on every request — never by what one process remembers. Two engines with pools of their own
on the same database stand for two nodes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Connection, event, inspect, select
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.exc import StaleDataError

import crm_admin.models  # noqa: F401 - every model mapped
from crm_admin import db
from crm_admin.core.models import CasbinRule
from crm_admin.core.permissions import Gate, bump_policy_version
from crm_admin.customers.models import Customer
from crm_admin.db import Base
from tests.conftest import TEST_DB_URL
from tests.customers.conftest import make_customer  # noqa: F401


@pytest.fixture
def other_node(engine: Any) -> Iterator[sessionmaker[Session]]:
    other = db.make_engine(TEST_DB_URL, pool_size=2)
    yield sessionmaker(bind=other, autoflush=False, expire_on_commit=False)
    other.dispose()


def test_every_versioned_table_checks_its_version_in_the_update() -> None:
    """A ``version`` column is the mapper's version counter: SQLAlchemy adds ``AND version = <read>``
    to each UPDATE and DELETE and refuses the write when no row matched."""
    versioned = [m.class_ for m in Base.registry.mappers if "version" in m.columns]
    assert {m.__tablename__ for m in versioned} >= {"customer", "sales_opportunity", "customer_order"}
    for model in versioned:
        mapper: Any = inspect(model)
        assert mapper.version_id_col is mapper.columns["version"], model.__tablename__


def test_a_save_based_on_a_stale_read_is_refused_by_the_database(make_customer: Any,  # noqa: F811
                                                                 other_node: Any) -> None:
    customer = make_customer("甲客户")
    statements: list[str] = []

    def remember(_conn: Connection, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    here = db.session_factory()()
    try:
        mine = here.get(Customer, customer.id)
        assert mine is not None and mine.version == 1
        # node B saves the customer meanwhile
        with other_node() as there, there.begin():
            theirs = there.get(Customer, customer.id)
            theirs.remark = "B 的修改"
        # node A's in-memory check would pass (it read version 1); the UPDATE's WHERE does not
        mine.remark = "A 的修改"
        event.listen(db.get_engine(), "before_cursor_execute", remember)
        try:
            with pytest.raises(StaleDataError):
                here.commit()
        finally:
            event.remove(db.get_engine(), "before_cursor_execute", remember)
        here.rollback()
    finally:
        here.close()
    update = next(s for s in statements if s.lstrip().upper().startswith("UPDATE CUSTOMER"))
    where = update.upper().split("WHERE", 1)[1]
    assert "VERSION" in where
    with db.session_factory()() as s:
        row = s.get(Customer, customer.id)
        assert row is not None and (row.remark, row.version) == ("B 的修改", 2)


def test_a_policy_change_on_one_node_reaches_the_other_through_the_database(make_user: Any,
                                                                            other_node: Any) -> None:
    user = make_user("pv_user", roles=("readonly",))
    node_a = Gate()  # each process has its own cached gate
    with db.get_engine().connect() as conn:
        assert ("customer", "delete") not in node_a.grants(conn, user.id).permissions
    with other_node() as there, there.begin():
        there.add(CasbinRule(ptype="p", v0="role:readonly", v1="customer", v2="delete", v3="self"))
        bump_policy_version(there.connection())
    with db.get_engine().connect() as conn:  # node A's next request
        assert ("customer", "delete") in node_a.grants(conn, user.id).permissions


def test_without_the_version_a_node_would_keep_its_old_answer(make_user: Any, other_node: Any) -> None:
    """The control: the rule alone does not reach a node's cache; the version read per request does."""
    user = make_user("pv_user2", roles=("readonly",))
    node_a = Gate()
    with db.get_engine().connect() as conn:
        node_a.grants(conn, user.id)
    with other_node() as there, there.begin():
        there.add(CasbinRule(ptype="p", v0="role:readonly", v1="customer", v2="delete", v3="self"))
    with db.get_engine().connect() as conn:
        assert ("customer", "delete") not in node_a.grants(conn, user.id).permissions
    with other_node() as there, there.begin():
        bump_policy_version(there.connection())
    with db.get_engine().connect() as conn:
        assert ("customer", "delete") in node_a.grants(conn, user.id).permissions
    with db.session_factory()() as s:  # and the version is a counter in the database
        assert s.execute(select(CasbinRule.id).where(CasbinRule.v2 == "delete",
                                                     CasbinRule.v0 == "role:readonly")).first()
