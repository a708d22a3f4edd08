"""The high-availability set-up, for real: three Galera nodes, HAProxy and two app nodes on this
machine (``scripts/cluster.sh``), acknowledged writes through the load balancer, kill -9 of the
database node that takes them, nothing acknowledged lost.

Needs root (or an existing mysql account setup), galera-4, haproxy, rsync/mariadb-backup and the
ports of the local cluster (3310–3314, 4561–4584, 8800–8803, 8899, 9201–9203); takes about two
minutes. Runs only with ``CRM_CLUSTER_TEST=1`` (``.ci/run`` sets it), in a fresh cluster directory
that it removes at the end.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(os.environ.get("CRM_CLUSTER_TEST") != "1",
                                reason="cluster test: set CRM_CLUSTER_TEST=1 (needs galera-4 and haproxy)")

REPO = Path(__file__).resolve().parents[2]


def _env(cluster_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CRM_DATABASE_URL", "CRM_DATA_DIR")}
    env.update(CRM_CLUSTER_DIR=str(cluster_dir), CRM_CLUSTER_APPS="2", CRM_SCHEDULER_ENABLED="true")
    return env


@pytest.fixture(scope="module")
def cluster() -> Iterator[Path]:
    folder = Path(os.environ.get("CRM_CLUSTER_DIR") or tempfile.mkdtemp(prefix="crm-cluster-"))
    env = _env(folder)
    try:
        subprocess.run([str(REPO / "scripts" / "cluster.sh"), "up"], env=env, check=True, timeout=600)
        os.environ.update(CRM_CLUSTER_DIR=str(folder), CRM_CLUSTER_APPS="2")
        yield folder
    finally:
        subprocess.run([str(REPO / "scripts" / "cluster.sh"), "destroy"], env=env, check=False, timeout=300)


def test_replicated_writes_move_update_time_on_every_node(cluster: Path) -> None:
    """The dashboard's cache key (information_schema.TABLES.UPDATE_TIME) moves on the nodes that
    only apply a replicated write, not just on the one that took it."""
    from crm_admin.cluster import local

    paths = local.Paths(cluster)
    node1, *others = local.DB_NODES
    sql = ("SELECT UPDATE_TIME FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'crm' "
           "AND TABLE_NAME = 'dict_type'")
    before = {n.name: local.mysql(paths, n, sql)[0][0] for n in others}
    time.sleep(1.1)  # the time has one-second resolution
    local.mysql(paths, node1, "UPDATE crm.dict_type SET updated_at = NOW(6) ORDER BY id LIMIT 1")
    time.sleep(0.5)
    after = {n.name: local.mysql(paths, n, sql)[0][0] for n in others}
    for name in after:
        assert after[name] is not None and (before[name] is None or after[name] > before[name]), (before, after)


def test_killing_the_writer_loses_no_acknowledged_write(cluster: Path) -> None:
    from crm_admin.cluster import drill, local

    paths = local.Paths(cluster)
    drill.ensure_data(paths, 0.001)
    run = drill.Drill(paths, users=5, before=10, after=10, label="ci-writer-kill")
    report = asyncio.run(run.run(drill.writer_kill))

    assert report["writes"]["acknowledged"] > 20
    assert report["check"]["lost"] == 0, report["check"]
    nodes = report["check"]["nodes"]
    assert len(nodes) == 3 and all(n["missing"] == 0 for n in nodes.values())
    # the app recovered: writes after the fail-over were acknowledged, errors lasted a few seconds
    assert report["error_window_s"] <= 5, report["error_bursts"]
    assert report["scheduler"]["days_with_two_successful_runs"] == []
    assert report["scheduler"]["duplicate_care_tasks"] == 0
    states = {n["node"]: n["state"] for n in report["cluster_after"]["nodes"]}
    assert states == {"node1": "Synced", "node2": "Synced", "node3": "Synced"}
