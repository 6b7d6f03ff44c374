"""The `operation` label of the Graph call metrics: the call's kind, never an id."""

import pytest

from server.clients.meta.client import operation_name


@pytest.mark.parametrize(
    ("method", "path", "operation"),
    [
        ("POST", "900000000000001/adaccount", "POST /{id}/adaccount"),
        ("GET", "act_200000000000001", "GET /{id}"),
        ("POST", "act_200000000000001/assigned_users", "POST /{id}/assigned_users"),
        ("GET", "1234/owned_ad_accounts", "GET /{id}/owned_ad_accounts"),
        ("POST", "", "POST /"),  # a batch
    ],
)
def test_ids_are_left_out(method: str, path: str, operation: str) -> None:
    assert operation_name(method, path) == operation
