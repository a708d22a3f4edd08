"""Running crm-admin on a MariaDB Galera cluster behind HAProxy: the local cluster, its health
responder and the failure drills (``scripts/cluster.sh``)."""
