"""The two-team company these tests probe lives in ``tests/company.py`` (shared by every module's tests)."""

from tests.company import KINDS, World, snapshot

__all__ = ["KINDS", "World", "snapshot"]
