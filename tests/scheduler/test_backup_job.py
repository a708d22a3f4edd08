"""The daily backup job verifies the file it has just written: a good one is kept, a bad one is renamed to
``*.bad`` and the run fails with the reason, visible on the scheduler page."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import crm_admin.backup as backup_module
from crm_admin.backup import verify
from crm_admin.scheduler import service
from crm_admin.settings import get_settings


@pytest.fixture
def backup_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("CRM_BACKUP_DIR", str(tmp_path))
    get_settings.cache_clear()
    yield tmp_path
    monkeypatch.delenv("CRM_BACKUP_DIR")
    get_settings.cache_clear()


def test_the_job_keeps_a_backup_that_verifies(backup_dir: Path) -> None:
    result = service.run_job("backup", trigger="manual")
    assert result.status == "success", result.detail
    assert "已校验" in result.detail
    made = list(backup_dir.glob("crm-*.gz"))
    assert len(made) == 1
    assert verify(made[0]).manifest is not None


def test_a_backup_that_fails_verification_fails_the_run(backup_dir: Path, admin_client: Any,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    written = backup_module.backup

    def backup_damaged_on_disk(url: Any, output: Path) -> Any:
        manifest = written(url, output)
        data = bytearray(output.read_bytes())
        data[len(data) // 2] ^= 0xFF  # what a failing disk or a full one can do after the write
        output.write_bytes(bytes(data))
        return manifest

    monkeypatch.setattr(backup_module, "backup", backup_damaged_on_disk)
    result = service.run_job("backup", trigger="manual")
    assert result.status == "failed"
    assert "没有通过校验" in result.detail and ".bad" in result.detail
    assert "Error" not in result.detail  # the operator's sentence, not an exception's name
    assert not list(backup_dir.glob("crm-*.gz"))  # nothing that looks like a usable backup
    assert len(list(backup_dir.glob("crm-*.gz.bad"))) == 1

    page = admin_client.get("/admin/scheduler")
    assert page.status_code == 200
    assert "失败" in page.text and "没有通过校验" in page.text
