"""What a restore from the recycle bin (``core.recycling``) must not break in the contacts: a customer has
one primary contact at most. A primary contact put back after another one became primary comes back
as an ordinary contact; of several primaries put back at once without one in place, the newest stays."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from crm_admin.contacts.models import Linkman
from crm_admin.core import recycling


@recycling.on_restore
def one_primary_contact(session: Session, restored: Mapping[str, Sequence[int]]) -> None:
    ids = sorted(restored.get(Linkman.__tablename__, ()))
    if not ids:
        return
    back: dict[int, list[int]] = {}
    for contact_id, customer_id in session.execute(
        select(Linkman.id, Linkman.customer_id).where(Linkman.id.in_(ids), Linkman.is_primary.is_(True))
    ).tuples():
        back.setdefault(customer_id, []).append(contact_id)
    if not back:
        return
    in_place = set(session.execute(
        select(Linkman.customer_id).where(Linkman.customer_id.in_(sorted(back)), Linkman.is_primary.is_(True),
                                          Linkman.id.not_in(ids))
    ).scalars())
    unmark = [i for customer_id, found in back.items()
              for i in (found if customer_id in in_place else sorted(found)[:-1])]
    if unmark:
        session.execute(update(Linkman).where(Linkman.id.in_(unmark)).values(is_primary=False)
                        .execution_options(synchronize_session=False))
