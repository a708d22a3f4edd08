"""Settings: embedded defaults, the persisted secret key, and production refusing unsafe settings."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from crm_admin.settings import Settings, UnsafeSettings, get_settings

GOOD_SECRET = "k" * 48


def make(**kwargs: Any) -> Settings:
    return Settings(_env_file=None, **kwargs)  # type: ignore[call-arg]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> Any:
    for name in ("CRM_ENV", "CRM_SECRET_KEY", "CRM_HTTPS", "CRM_TLS_CERTFILE", "CRM_TLS_KEYFILE",
                 "CRM_ADMIN_PASSWORD", "CRM_DATABASE_URL", "CRM_DATA_DIR", "CRM_PASSWORD_HASH_MEMORY_KIB",
                 "CRM_PASSWORD_HASH_PASSES"):
        monkeypatch.delenv(name, raising=False)
    yield
    get_settings.cache_clear()


def test_default_database_is_sqlite_in_the_data_folder(tmp_path: Path) -> None:
    s = make(data_dir=tmp_path / "data")
    assert s.database_url == f"sqlite:///{(tmp_path / 'data' / 'crm.sqlite3').as_posix()}"
    assert s.is_sqlite
    assert make().database_url == "sqlite:///data/crm.sqlite3"  # relative to the working directory


def test_secret_key_is_generated_once_and_owner_only(tmp_path: Path) -> None:
    s = make(data_dir=tmp_path)
    key = s.resolved_secret_key()
    path = tmp_path / "secret_key"
    assert len(key) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert make(data_dir=tmp_path).resolved_secret_key() == key  # kept across restarts
    assert make(data_dir=tmp_path, secret_key=GOOD_SECRET).resolved_secret_key() == GOOD_SECRET


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({}, "CRM_SECRET_KEY"),
        ({"secret_key": "short"}, "CRM_SECRET_KEY"),
        ({"secret_key": GOOD_SECRET}, "HTTPS"),
        ({"secret_key": GOOD_SECRET, "https": True, "admin_password": "abc12345"}, "CRM_ADMIN_PASSWORD"),
        ({"secret_key": GOOD_SECRET, "tls_certfile": "/nonexistent/cert.pem",
          "tls_keyfile": "/nonexistent/key.pem"}, "证书文件不存在"),
        ({"secret_key": GOOD_SECRET, "https": True, "password_hash_memory_kib": 64,
          "password_hash_passes": 1}, "CRM_PASSWORD_HASH_MEMORY_KIB"),
        ({"secret_key": GOOD_SECRET, "https": True, "password_hash_memory_kib": 12 * 1024,
          "password_hash_passes": 2}, "OWASP"),
        ({"secret_key": GOOD_SECRET, "https": True, "password_hash_memory_kib": 4 * 1024,
          "password_hash_passes": 10}, "OWASP"),
    ],
)
def test_production_refuses_unsafe_settings(tmp_path: Path, kwargs: dict[str, Any], fragment: str) -> None:
    s = make(env="production", data_dir=tmp_path, **kwargs)
    with pytest.raises(UnsafeSettings) as info:
        s.check_production()
    assert fragment in str(info.value)
    assert "拒绝以不安全的配置启动生产模式" in str(info.value)


def test_production_never_generates_a_secret(tmp_path: Path) -> None:
    with pytest.raises(UnsafeSettings, match="CRM_SECRET_KEY"):
        make(env="production", data_dir=tmp_path).resolved_secret_key()
    assert not (tmp_path / "secret_key").exists()


def test_safe_production_settings_are_accepted(tmp_path: Path) -> None:
    make(env="production", data_dir=tmp_path, secret_key=GOOD_SECRET, https=True).check_production()
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("x")
    key.write_text("x")
    make(env="production", secret_key=GOOD_SECRET, tls_certfile=cert, tls_keyfile=key).check_production()
    for memory, passes in ((46 * 1024, 1), (19 * 1024, 2), (12 * 1024, 3), (7 * 1024, 5)):  # OWASP's list
        make(env="production", secret_key=GOOD_SECRET, https=True, password_hash_memory_kib=memory,
             password_hash_passes=passes).check_production()


def test_password_hashing_cost_follows_the_settings() -> None:
    from crm_admin.core import security

    assert (make().password_hash_memory_kib, make().password_hash_passes) == (19 * 1024, 2)
    # the suite runs with a token cost (tests/conftest.py); the hashes say which parameters made them
    assert "$m=64,t=1,p=1$" in security.hash_password("Abcdefg123")


def test_app_refuses_to_start_in_unsafe_production(tmp_path: Path) -> None:
    from crm_admin.web.app import create_app

    with pytest.raises(UnsafeSettings):
        create_app(make(env="production", data_dir=tmp_path))


def test_serve_refuses_unsafe_production_with_a_clear_message(monkeypatch: pytest.MonkeyPatch,
                                                              tmp_path: Path) -> None:
    from crm_admin.cli import main

    monkeypatch.setenv("CRM_ENV", "production")
    monkeypatch.setenv("CRM_SECRET_KEY", "short")
    monkeypatch.setenv("CRM_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    result = CliRunner().invoke(main, ["serve", "--port", "1"])
    assert result.exit_code == 2
    assert "拒绝以不安全的配置启动生产模式" in result.output
    assert "Traceback" not in result.output
