"""Tenant scope is mandatory: repositories of workspace-owned rows take a scope on every read, with
no default that would mean "every workspace"."""

import inspect
import uuid

import pytest
from sqlalchemy import select
from sqlalchemy.dialects import postgresql

from server.accounts.models import Account
from server.accounts.repository import AccountRepository
from server.exports.repository import ExportRepository
from server.pixels.repository import PixelRepository
from server.requests.repository import RequestRepository
from server.tenancy import SYSTEM, WorkspaceScope, conflicts, narrowed, scope_filter

REPOSITORIES = [AccountRepository, PixelRepository, RequestRepository, ExportRepository]
# The reads a forgotten workspace would turn into reads across workspaces.
SCOPED_READS = {
    "get",
    "get_many",
    "lock",
    "list_users",
    "list_accounts",
    "list_pixels",
    "list_requests",
    "list_exports",
}


@pytest.mark.parametrize("repository", REPOSITORIES, ids=lambda r: r.__name__)
def test_no_workspace_parameter_defaults_to_every_workspace(repository: type) -> None:
    for name, method in inspect.getmembers(repository, inspect.isfunction):
        for parameter in inspect.signature(method).parameters.values():
            if parameter.name in {"workspace_id", "scope"}:
                assert parameter.default is inspect.Parameter.empty, (
                    f"{repository.__name__}.{name}({parameter.name}=...)"
                )


@pytest.mark.parametrize("repository", REPOSITORIES, ids=lambda r: r.__name__)
def test_scoped_reads_take_a_scope(repository: type) -> None:
    reads = [name for name, _ in inspect.getmembers(repository, inspect.isfunction) if name in SCOPED_READS]
    assert reads
    for name in reads:
        assert "scope" in inspect.signature(getattr(repository, name)).parameters, f"{repository.__name__}.{name}"


def test_a_workspace_scope_narrows_and_the_system_scope_does_not() -> None:
    workspace_id = uuid.uuid4()
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    scoped = narrowed(select(Account.id), Account.workspace_id, WorkspaceScope(workspace_id))
    assert "WHERE accounts.workspace_id =" in str(scoped.compile(dialect=dialect))
    assert "WHERE" not in str(narrowed(select(Account.id), Account.workspace_id, SYSTEM).compile(dialect=dialect))


def test_a_staff_filter_narrows_the_system_scope_and_cannot_widen_a_workspace_scope() -> None:
    mine, other = uuid.uuid4(), uuid.uuid4()
    assert scope_filter(SYSTEM, None) is None
    assert scope_filter(SYSTEM, other) == other
    assert scope_filter(WorkspaceScope(mine), None) == mine
    assert not conflicts(WorkspaceScope(mine), mine)
    assert conflicts(WorkspaceScope(mine), other)
    assert not conflicts(SYSTEM, other)
