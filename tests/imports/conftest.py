from tests.customers.conftest import make_customer, principal  # noqa: F401
