"""Import jobs as a user drives them: a workbook built in memory, the job's progress polled over HTTP."""

from __future__ import annotations

import io
import time
from typing import Any

from openpyxl import Workbook


def workbook(headers: list[str], rows: list[list[Any]]) -> bytes:
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.append(headers)
    for row in rows:
        ws.append(row)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def wait(client: Any, job_url: str, *, seconds: float = 30.0) -> dict[str, Any]:
    """The job's status once it stops running (dry run or apply)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        status: dict[str, Any] = client.get(job_url + "/status").json()
        if not status["running"]:
            return status
        time.sleep(0.05)
    raise AssertionError("the import did not finish")
