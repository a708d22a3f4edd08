"""Sealing the audit log: every few seconds, on one process at a time, the committed audit rows are
chained (``core.audit.seal_pending``)."""

from __future__ import annotations

import logging

from sqlalchemy.exc import DBAPIError

from crm_admin import db
from crm_admin.core.audit import SealConflict, SealResult, seal_pending
from crm_admin.scheduler.service import register_periodic

log = logging.getLogger(__name__)


@register_periodic("audit_seal", "审计日志封存", "audit_seal_seconds")
def seal_audit_log() -> SealResult:
    with db.job_session_factory()() as session:
        result = seal_pending(session)
    if result.sealed:
        log.debug("audit log: sealed %d rows, chain at %d", result.sealed, result.head_seq)
    return result


def seal_now() -> SealResult | None:
    """One sealing pass now (``crm-admin audit seal``); None when another sealer got there first.

    No lease needed for safety: sealers queue on the ``audit_seal`` row, and across cluster nodes the
    unique seal numbers make the loser fail at commit without changing anything."""
    try:
        return seal_audit_log()
    except SealConflict:
        return None
    except DBAPIError as exc:  # a deadlock or a cluster's conflicting commit: the other sealer won
        if getattr(getattr(exc, "orig", None), "args", [None])[0] in (1213, 1205, 1062):
            return None
        raise
