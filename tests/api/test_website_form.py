"""The example of docs/api.md, run as it is documented: docs/website_form.py (standard library only)
in its own process against a live server, creating a customer, its contact and a follow-up through a
token; sent twice it creates nothing twice; a duplicate company is refused with the page's reason."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from crm_admin import db

SCRIPT = Path(__file__).resolve().parents[2] / "docs" / "website_form.py"
FORM = ["--company", "杭州云杉科技有限公司", "--name", "王磊", "--mobile", "13912345678",
        "--message", "想了解贵公司的产品报价", "--submission-id", "web-0001"]


def _run(live_server: str, token: str, args: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CRM_API_URL": f"{live_server}/api/v1", "CRM_API_TOKEN": token}
    return subprocess.run([sys.executable, str(SCRIPT), *args], env=env, capture_output=True, text=True,
                          timeout=60, check=False)


def test_website_form_creates_a_customer_through_a_token(live_server: str, world: Any, make_token: Any) -> None:
    import json

    from crm_admin.contacts.models import Linkman
    from crm_admin.customers.models import Customer
    from crm_admin.followups.models import FollowUp

    token = make_token("mgr_a", name="官网表单")
    done = _run(live_server, token, FORM)
    assert done.returncode == 0, done.stderr
    ids = json.loads(done.stdout)
    with db.session_factory()() as session:
        customer = session.get(Customer, ids["customer_id"])
        assert customer is not None and customer.manager_id == world.users["mgr_a"]
        assert customer.source == "website" and customer.code == ids["customer_code"]
        contact = session.get(Linkman, ids["contact_id"])
        assert contact is not None and contact.customer_id == customer.id and contact.is_primary
        follow_up = session.get(FollowUp, ids["follow_up_id"])
        assert follow_up is not None and follow_up.content == "想了解贵公司的产品报价"
        customers = session.execute(select(func.count()).select_from(Customer)).scalar_one()

    again = _run(live_server, token, FORM)  # the same submission sent again: the same answers
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == ids
    another = _run(live_server, token, [*FORM[:-1], "web-0002"])  # a new submission of the same company
    assert another.returncode == 2 and "疑似重复客户" in another.stderr
    with db.session_factory()() as session:
        assert session.execute(select(func.count()).select_from(Customer)).scalar_one() == customers


def test_website_form_with_a_revoked_token_writes_nothing(live_server: str, world: Any, make_token: Any) -> None:
    from tests.api.conftest import revoke_token

    token = make_token("mgr_a")
    revoke_token(token)
    done = _run(live_server, token, FORM)
    assert done.returncode == 2 and "401" in done.stderr
