from collections.abc import Iterator

import pytest

from tests.customers.conftest import make_customer, principal  # noqa: F401


@pytest.fixture(autouse=True)
def clean_import_jobs() -> Iterator[None]:
    """Every test starts without import jobs (user ids are reused once the database is reset)."""
    yield
    import shutil

    from crm_admin.core import importing

    shutil.rmtree(importing._jobs_dir(), ignore_errors=True)
