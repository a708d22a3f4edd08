"""policy lines carry their data scope; one permission per business action

Revision ID: 0009
Revises: 0008

- Every ``p`` line gets the scope it had so far, its role's ``data_scope``, written into ``v3``
  (``p, role:sales_lead, customer, view, dept_tree``); from now on a permission may have a scope of its
  own (see the team's customers, edit only one's own). ``sys_role.data_scope`` stays as the role's
  default for permissions granted later.
- Transferring customers is one permission, ``customer`` / ``transfer``: a role that held only the
  duplicate ``transfer`` / ``transfer`` gets ``customer`` / ``transfer`` instead, and the duplicate goes.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

rule = sa.table("casbin_rule", sa.column("id", sa.Integer), sa.column("ptype", sa.String), sa.column("v4", sa.String),
                sa.column("v5", sa.String),
                sa.column("v0", sa.String), sa.column("v1", sa.String), sa.column("v2", sa.String),
                sa.column("v3", sa.String))
role = sa.table("sys_role", sa.column("code", sa.String), sa.column("data_scope", sa.String))
meta = sa.table("sys_meta", sa.column("key", sa.String), sa.column("value", sa.Integer))
SCOPES = ("all", "dept_tree", "dept", "self")


def upgrade() -> None:
    conn = op.get_bind()
    defaults = {code: scope for code, scope in conn.execute(sa.select(role.c.code, role.c.data_scope))}
    lines = conn.execute(sa.select(rule.c.id, rule.c.v0, rule.c.v1, rule.c.v2, rule.c.v3)
                         .where(rule.c.ptype == "p")).all()
    held = {(v0, v1, v2) for _id, v0, v1, v2, _v3 in lines}
    for rule_id, v0, v1, v2, v3 in lines:
        scope = v3 if v3 in SCOPES else ("all" if "*" in (v1, v2) else defaults.get(v0.removeprefix("role:"), "self"))
        if (v1, v2) == ("transfer", "transfer"):
            if (v0, "customer", "transfer") not in held:
                conn.execute(sa.insert(rule).values(ptype="p", v0=v0, v1="customer", v2="transfer", v3=scope,
                                                    v4="", v5=""))
                held.add((v0, "customer", "transfer"))
            conn.execute(sa.delete(rule).where(rule.c.id == rule_id))
        elif v3 != scope:
            conn.execute(sa.update(rule).where(rule.c.id == rule_id).values(v3=scope))
    # every process reloads the policy
    updated = conn.execute(sa.update(meta).where(meta.c.key == "policy_version")
                           .values(value=meta.c.value + 1)).rowcount
    if not updated:
        conn.execute(sa.insert(meta).values(key="policy_version", value=1))


def downgrade() -> None:
    conn = op.get_bind()
    conn.execute(sa.update(rule).where(rule.c.ptype == "p").values(v3=""))
