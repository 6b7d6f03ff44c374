"""Walks the adplane.v1 descriptors and enforces the contract rules (docs/architecture.md, "The contract")."""

import importlib
import pkgutil
from collections.abc import Iterator

import pytest
from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor

import adplane.v1
from adplane.v1 import access_pb2
from server.auth.permissions import SYSTEM_PERMISSIONS, WORKSPACE_ROLE_PERMISSIONS
from server.composition import Infrastructure

# Every generated message module of the package, so a new *_service.proto is checked unasked.
FILES = [
    importlib.import_module(f"adplane.v1.{module.name}").DESCRIPTOR
    for module in pkgutil.iter_modules(adplane.v1.__path__)
    if module.name.endswith("_pb2")
]


def _methods() -> Iterator[descriptor.MethodDescriptor]:
    for file in FILES:
        for service in file.services_by_name.values():
            yield from service.methods


METHODS = list(_methods())


def _route(method: descriptor.MethodDescriptor) -> tuple[str, http_pb2.HttpRule]:
    rule: http_pb2.HttpRule = method.GetOptions().Extensions[annotations_pb2.http]
    pattern = rule.WhichOneof("pattern")
    assert pattern is not None, f"{method.full_name} has no google.api.http route"
    return getattr(rule, pattern), rule


def test_the_walk_finds_the_services() -> None:
    services = {s.full_name for f in FILES for s in f.services_by_name.values()}
    assert "adplane.v1.WorkspaceService" in services


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.full_name)
def test_every_rpc_declares_exactly_one_access_policy(method: descriptor.MethodDescriptor) -> None:
    options = method.GetOptions()
    assert options.HasExtension(access_pb2.access), f"{method.full_name} declares no access policy"
    assert options.Extensions[access_pb2.access].WhichOneof("rule") is not None


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.full_name)
def test_routes_follow_the_conventions(method: descriptor.MethodDescriptor) -> None:
    path, rule = _route(method)
    assert path.startswith("/api/"), path
    assert not path.endswith("/"), f"{path}: Envoy refuses templates with a trailing slash"
    if "{" in path:
        assert rule.body != "*", f"{method.full_name}: body '*' would let JSON override path variables"
    assert method.input_type.name == f"{method.name}Request"
    assert method.output_type.name == f"{method.name}Response"


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.full_name)
def test_workspace_policies_have_a_workspace_id_and_route(method: descriptor.MethodDescriptor) -> None:
    policy = method.GetOptions().Extensions[access_pb2.access]
    if policy.WhichOneof("rule") != "workspace_permission":
        return
    assert "workspace_id" in method.input_type.fields_by_name, f"{method.full_name} lacks workspace_id"
    path, _ = _route(method)
    prefix = "/api/workspaces/{workspace_id}"
    assert path == prefix or path.startswith(prefix + "/"), f"{method.full_name}: {path} is not under {prefix}/"


def _declared(kind: str) -> set[str]:
    return {
        getattr(method.GetOptions().Extensions[access_pb2.access], kind)
        for method in METHODS
        if method.GetOptions().Extensions[access_pb2.access].WhichOneof("rule") == kind
    }


def test_declared_permissions_are_in_the_catalog() -> None:
    """A typo in a proto policy would make an RPC callable by superusers only."""
    assert _declared("system_permission") <= SYSTEM_PERMISSIONS
    granted_by_roles = set().union(*WORKSPACE_ROLE_PERMISSIONS.values())
    assert _declared("workspace_permission") <= granted_by_roles
    # Staff reach every workspace through the system permission of the same name.
    assert _declared("workspace_permission") <= SYSTEM_PERMISSIONS


async def test_seeded_roles_grant_catalog_permissions_and_administrator_has_all(infrastructure: Infrastructure) -> None:
    async with infrastructure.unit_of_work() as uow:
        roles = {role.name: set(role.permissions) for role in await uow.roles.list_all()}
    assert {"administrator", "staff"} <= set(roles)
    for permissions in roles.values():
        assert permissions <= SYSTEM_PERMISSIONS
    assert roles["administrator"] == SYSTEM_PERMISSIONS, "a new permission needs a migration granting it"
