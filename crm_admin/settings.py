"""Runtime configuration: one pydantic-settings class read from ``CRM_*`` variables (and ``.env``)."""

from __future__ import annotations

import os
import secrets
import stat
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DATA_DIR_DEFAULT = Path("data")


class UnsafeSettings(RuntimeError):
    """Raised when production mode is asked for with settings that would be unsafe."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CRM_", env_file=".env", extra="ignore")

    env: Literal["development", "production"] = "development"
    data_dir: Path = DATA_DIR_DEFAULT
    database_url: str = ""
    secret_key: str = ""
    admin_password: str = ""

    # HTTPS served by the app itself; behind a TLS proxy set ``https=true`` instead.
    tls_certfile: Path | None = None
    tls_keyfile: Path | None = None
    https: bool = False
    trusted_proxies: str = "127.0.0.1"

    session_idle_minutes: int = Field(default=120, ge=1, le=24 * 60)
    session_max_hours: int = Field(default=12, ge=1, le=24 * 30)
    login_max_failures: int = Field(default=5, ge=1, le=100)
    login_lock_minutes: int = Field(default=15, ge=1, le=24 * 60)
    login_ip_max_per_minute: int = Field(default=20, ge=1, le=10_000)
    # calls to /api/v1 per personal token in any sliding minute, all processes and nodes together
    api_rate_per_minute: int = Field(default=600, ge=1, le=1_000_000)
    # Where sign-in attempts per address are counted (accounts/throttle.py): in the database unless a
    # Redis is given ("redis://127.0.0.1:6379/0"); while it is unreachable, in the database again.
    redis_url: str = ""
    # keys are "<prefix>login:<address>:<minute>": several installations can share one Redis
    redis_key_prefix: str = Field(default="crm:", max_length=64)
    # The cost of one password check (argon2id, one lane). OWASP's minimum is any of 46 MiB × 1 pass,
    # 19 MiB × 2, 12 MiB × 3, 9 MiB × 4, 7 MiB × 5; the default costs about 20 ms of one core.
    # Production refuses less; a test machine may set a token cost.
    password_hash_memory_kib: int = Field(default=19 * 1024, ge=8, le=4 * 1024 * 1024)
    password_hash_passes: int = Field(default=2, ge=1, le=20)

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # Every answer says how long it spent in the database (a ``Server-Timing`` header: SQL time and
    # statements, and the whole request), for measuring; off by default (it tells clients timings)
    server_timing: bool = False
    timezone: str = "Asia/Shanghai"
    default_locale: Literal["zh", "en"] = "zh"
    scheduler_enabled: bool = True
    # Daily job times ("HH:MM", in ``timezone``); a run missed while the server was down catches up.
    job_birthday_scan_time: str = Field(default="07:00", pattern=r"^\d{1,2}:\d{2}$")
    job_care_plans_time: str = Field(default="07:05", pattern=r"^\d{1,2}:\d{2}$")
    job_churn_evaluation_time: str = Field(default="02:30", pattern=r"^\d{1,2}:\d{2}$")
    job_backup_time: str = Field(default="03:00", pattern=r"^\d{1,2}:\d{2}$")
    job_import_cleanup_time: str = Field(default="04:00", pattern=r"^\d{1,2}:\d{2}$")
    job_recycle_purge_time: str = Field(default="04:10", pattern=r"^\d{1,2}:\d{2}$")
    # Days a deleted customer, contact, opportunity or order stays in the recycle bin (回收站) before the
    # daily job purges it for good
    recycle_bin_days: int = Field(default=30, ge=1, le=3650)
    job_reclaim_time: str = Field(default="01:30", pattern=r"^\d{1,2}:\d{2}$")
    # Notifications (crm_admin/notifications): the outgoing mail server; TLS "none", "starttls" or "ssl"
    smtp_host: str = ""
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_user: str = ""
    smtp_password: str = ""
    smtp_from: str = ""
    smtp_tls: Literal["none", "starttls", "ssl"] = "starttls"
    # The address users open the system at ("https://crm.example.com"): links in e-mails and chat messages
    public_url: str = Field(default="", pattern=r"^(https?://[^\s]*)?$")
    # Seconds between two passes of the notification sender (one node at a time), and each send's timeout
    notify_send_seconds: int = Field(default=30, ge=1, le=3600)
    notify_timeout_seconds: int = Field(default=10, ge=1, le=120)
    # When the daily digests go out ("HH:MM")
    job_notification_digest_time: str = Field(default="18:00", pattern=r"^\d{1,2}:\d{2}$")
    # Seconds between two passes of the audit log's sealer (chains the newest audit rows)
    audit_seal_seconds: int = Field(default=5, ge=1, le=600)
    backup_dir: Path | None = None
    backup_keep_days: int = Field(default=7, ge=1, le=3650)
    # Requests of one server process at work at once; more wait their turn (0: no limit). A few keep
    # one core busy while some wait for the database; hundreds at once cost each about twice the CPU.
    max_concurrent_requests: int = Field(default=8, ge=0, le=10_000)
    db_pool_size: int = Field(default=10, ge=1, le=200)
    # Seconds (crm_admin/db.py): a frozen database answers 503 instead of hanging every request.
    db_connect_timeout: int = Field(default=5, ge=1, le=300)
    db_read_timeout: int = Field(default=30, ge=1, le=3600)
    db_write_timeout: int = Field(default=30, ge=1, le=3600)
    db_pool_timeout: int = Field(default=10, ge=1, le=300)
    # scheduled jobs and command-line tasks, whose single statements may take minutes
    db_job_timeout: int = Field(default=600, ge=1, le=24 * 3600)
    # A pooled connection is replaced after this many seconds (crm_admin/db.py): below a load
    # balancer's idle cut-off, and how long a connection may stay on a fail-over node.
    db_pool_recycle: int = Field(default=600, ge=10, le=24 * 3600)
    # Attempts in all of a unit of work (or a request) that meets a passing database error such as a
    # deadlock or a cluster node leaving (crm_admin/retry.py); 1 turns running again off.
    db_retry_attempts: int = Field(default=4, ge=1, le=10)

    @model_validator(mode="after")
    def _fill_defaults(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{(self.data_dir / 'crm.sqlite3').as_posix()}"
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def serves_https(self) -> bool:
        return self.https or bool(self.tls_certfile and self.tls_keyfile)

    def resolved_secret_key(self) -> str:
        """The signing key: explicit, or (outside production) generated once and kept on disk."""
        if self.secret_key:
            return self.secret_key
        if self.env == "production":
            raise UnsafeSettings("生产模式必须设置 CRM_SECRET_KEY(至少 32 个字符的随机字符串)。")
        return _persisted_secret(self.data_dir / "secret_key")

    def check_production(self) -> None:
        """Refuse to start production with settings that would be unsafe."""
        if self.env != "production":
            return
        problems: list[str] = []
        if len(self.secret_key) < 32:
            problems.append("CRM_SECRET_KEY 未设置或少于 32 个字符")
        if self.secret_key.lower() in {"changeme", "secret", "dev"}:
            problems.append("CRM_SECRET_KEY 使用了示例值")
        if not self.serves_https:
            problems.append("未启用 HTTPS(设置 CRM_TLS_CERTFILE/CRM_TLS_KEYFILE,或在 TLS 反向代理后设置 CRM_HTTPS=true)")
        if self.admin_password and len(self.admin_password) < 12:
            problems.append("CRM_ADMIN_PASSWORD 少于 12 个字符")
        if (self.password_hash_memory_kib < 7 * 1024
                or self.password_hash_memory_kib * self.password_hash_passes < 35 * 1024):
            problems.append("密码哈希强度低于 OWASP 最低要求(CRM_PASSWORD_HASH_MEMORY_KIB × "
                            "CRM_PASSWORD_HASH_PASSES 至少 35840,内存至少 7168 KiB)")
        if self.tls_certfile and not self.tls_certfile.exists():
            problems.append(f"证书文件不存在:{self.tls_certfile}")
        if self.tls_keyfile and not self.tls_keyfile.exists():
            problems.append(f"私钥文件不存在:{self.tls_keyfile}")
        if problems:
            raise UnsafeSettings("拒绝以不安全的配置启动生产模式:\n  - " + "\n  - ".join(problems))


def _persisted_secret(path: Path) -> str:
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(key)
    return key


@lru_cache
def get_settings() -> Settings:
    return Settings()
