"""The server's HTTP protocol: the C parser when installed, and Nagle's algorithm off either way."""

from __future__ import annotations

import importlib

from crm_admin.web import protocol


def _resolve(path: str) -> type:
    module, _sep, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def test_the_installed_parser_is_httptools() -> None:
    assert protocol.HAS_HTTPTOOLS  # a project dependency
    assert _resolve(protocol.protocol_path()).__name__ == "NoDelayHttpToolsProtocol"


def test_h11_remains_available_and_both_switch_off_nagle() -> None:
    for path in (protocol.protocol_path("h11"), protocol.protocol_path("httptools")):
        cls = _resolve(path)
        assert "connection_made" in vars(cls)
