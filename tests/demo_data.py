"""Demo-data fixtures shared by the foundation and browser tests (import them into a test module)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, text

from crm_admin import db
from crm_admin.core.context import SYSTEM, acting_as

DEMO_PASSWORD = "Demo12345"


def detach_departments(engine: Engine) -> None:
    """Break the user ↔ department links the demo makes, so the suite's reset can delete both."""
    with engine.begin() as conn:
        conn.execute(text("UPDATE sys_user SET dept_id = NULL"))
        conn.execute(text("UPDATE sys_dept SET parent_id = NULL, leader_id = NULL"))


@pytest.fixture
def demo_cleanup(engine: Engine) -> Iterator[None]:
    yield
    detach_departments(engine)


@pytest.fixture
def demo_data(engine: Engine) -> Iterator[Any]:
    """The database filled by ``crm-admin demo`` (demo accounts' password: ``DEMO_PASSWORD``)."""
    from crm_admin.demo import load_demo

    with acting_as(SYSTEM), db.transaction() as session:
        report = load_demo(session, password=DEMO_PASSWORD, seed=7)
    yield report
    detach_departments(engine)
