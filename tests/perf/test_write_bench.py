"""The write throughput benchmark (``crm-admin bench-writes``), in a smoke run: 2 writers for 1 second
on a small SQLite database of its own. The real measurement (32 writers, MariaDB) is in the README."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from tests.cli.runner import cli_env, run_cli


@pytest.mark.cli_command("bench-writes")
def test_bench_writes_saves_follow_ups_from_several_writers(tmp_path: Path) -> None:
    import crm_admin.models  # noqa: F401
    from crm_admin.core.audit import verify_chain

    url = f"sqlite:///{tmp_path / 'writes.sqlite3'}"
    result = run_cli("bench-writes", "--writers", "2", "--seconds", "1", "--seal-every", "0.3",
                     "--scale", "0.0005", env=cli_env(CRM_DATABASE_URL=url, CRM_DATA_DIR=str(tmp_path)))
    assert result.exit_code == 0, result.output
    assert "每秒" in result.stdout and "p95" in result.stdout
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["writers"] == 2 and summary["saves"] > 0 and summary["errors"] == 0
    assert summary["p95_ms"] >= summary["p50_ms"] > 0 and summary["seal_passes"] >= 1
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            assert verify_chain(conn).intact
    finally:
        engine.dispose()
