"""Principal permission checks and the policy table built from the services' descriptors."""

import itertools
import uuid

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import ServiceDescriptor

from adplane.v1 import access_pb2
from server.app import REGISTRATIONS
from server.auth.permissions import (
    MEMBERS_MANAGE,
    MEMBERS_READ,
    SYSTEM_PERMISSIONS,
    USERS_MANAGE,
    WORKSPACE_ROLE_PERMISSIONS,
    WORKSPACES_MANAGE,
    WORKSPACES_READ,
)
from server.auth.policies import AccessPolicy, PolicyKind, PolicyTable
from server.auth.principal import Principal, PrincipalKind
from server.auth.roles import WorkspaceRole

WORKSPACE = uuid.uuid4()
OTHER_WORKSPACE = uuid.uuid4()


def user(
    *,
    superuser: bool = False,
    system_permissions: frozenset[str] = frozenset(),
    workspace_id: uuid.UUID | None = None,
    workspace_role: WorkspaceRole | None = None,
) -> Principal:
    return Principal(
        kind=PrincipalKind.USER,
        id=uuid.uuid4(),
        superuser=superuser,
        system_permissions=system_permissions,
        workspace_id=workspace_id,
        workspace_role=workspace_role,
    )


# --- Principal ---------------------------------------------------------------------------------


def test_superuser_holds_every_permission_everywhere() -> None:
    principal = user(superuser=True)
    for permission in SYSTEM_PERMISSIONS:
        assert principal.has_system_permission(permission)
        assert principal.has_workspace_permission(permission, WORKSPACE)
        assert principal.has_workspace_permission(permission, OTHER_WORKSPACE)


def test_system_permissions_are_exactly_those_granted() -> None:
    principal = user(system_permissions=frozenset({USERS_MANAGE}))
    assert principal.has_system_permission(USERS_MANAGE)
    assert not principal.has_system_permission(WORKSPACES_MANAGE)
    assert not user().has_system_permission(USERS_MANAGE)


def test_system_permission_of_the_same_name_passes_a_workspace_check_in_every_workspace() -> None:
    staff = user(system_permissions=frozenset({MEMBERS_READ}))
    assert staff.has_workspace_permission(MEMBERS_READ, WORKSPACE)
    assert staff.has_workspace_permission(MEMBERS_READ, OTHER_WORKSPACE)
    # Only the permission of the same name.
    assert not staff.has_workspace_permission(MEMBERS_MANAGE, WORKSPACE)


@pytest.mark.parametrize("role", list(WorkspaceRole))
def test_workspace_role_grants_its_permissions_in_its_workspace_only(role: WorkspaceRole) -> None:
    member = user(workspace_id=WORKSPACE, workspace_role=role)
    for permission in WORKSPACE_ROLE_PERMISSIONS[role]:
        assert member.has_workspace_permission(permission, WORKSPACE)
        assert not member.has_workspace_permission(permission, OTHER_WORKSPACE)
        # A workspace role never turns into a system permission.
        assert not member.has_system_permission(permission)


def test_roles_rank_as_documented() -> None:
    viewer = user(workspace_id=WORKSPACE, workspace_role=WorkspaceRole.VIEWER)
    admin = user(workspace_id=WORKSPACE, workspace_role=WorkspaceRole.ADMIN)
    owner = user(workspace_id=WORKSPACE, workspace_role=WorkspaceRole.OWNER)
    assert viewer.has_workspace_permission(WORKSPACES_READ, WORKSPACE)
    assert not viewer.has_workspace_permission(MEMBERS_MANAGE, WORKSPACE)
    assert admin.has_workspace_permission(MEMBERS_MANAGE, WORKSPACE)
    assert owner.has_workspace_permission(MEMBERS_MANAGE, WORKSPACE)
    # Roles nest: each grants at least what the one below it grants.
    order = [WorkspaceRole.VIEWER, WorkspaceRole.MEMBER, WorkspaceRole.ADMIN, WorkspaceRole.OWNER]
    for lower, higher in itertools.pairwise(order):
        assert WORKSPACE_ROLE_PERMISSIONS[lower] <= WORKSPACE_ROLE_PERMISSIONS[higher]


def test_no_role_no_workspace_permission() -> None:
    assert not user(workspace_id=WORKSPACE).has_workspace_permission(WORKSPACES_READ, WORKSPACE)
    assert not user().has_workspace_permission(WORKSPACES_READ, WORKSPACE)


def test_api_key_principal_is_no_user() -> None:
    key = Principal(kind=PrincipalKind.API_KEY, id=uuid.uuid4(), system_permissions=frozenset({WORKSPACES_READ}))
    assert key.user_id is None
    assert key.has_workspace_permission(WORKSPACES_READ, WORKSPACE)
    person = user()
    assert person.user_id == person.id


def test_workspace_role_permissions_are_system_permissions() -> None:
    """Every workspace permission has a system permission of the same name, for staff to hold."""
    for role, permissions in WORKSPACE_ROLE_PERMISSIONS.items():
        assert permissions <= SYSTEM_PERMISSIONS, role


# --- PolicyTable -------------------------------------------------------------------------------


def _services() -> list[ServiceDescriptor]:
    return [registration.descriptor for registration in REGISTRATIONS]


def test_every_registered_method_has_a_policy() -> None:
    table = PolicyTable.from_services(_services())
    names = [f"/{service.full_name}/{method.name}" for service in _services() for method in service.methods]
    assert names
    for name in names:
        assert table.get(name) is not None, name


def test_unknown_method_has_no_policy() -> None:
    table = PolicyTable.from_services(_services())
    assert table.get("/adplane.v1.WorkspaceService/NoSuchMethod") is None


def _registered_policies() -> list[tuple[str, AccessPolicy]]:
    table = PolicyTable.from_services(_services())
    policies = []
    for service in _services():
        for method in service.methods:
            name = f"/{service.full_name}/{method.name}"
            policy = table.get(name)
            assert policy is not None, name
            policies.append((name, policy))
    return policies


def test_policies_name_known_permissions() -> None:
    for name, policy in _registered_policies():
        if policy.kind in (PolicyKind.SYSTEM_PERMISSION, PolicyKind.WORKSPACE_PERMISSION):
            assert policy.permission in SYSTEM_PERMISSIONS, (name, policy)
        else:
            assert policy.permission == "", (name, policy)
        if policy.kind is PolicyKind.WORKSPACE_PERMISSION:
            # Some workspace role must be able to pass it, or only staff ever could.
            assert any(policy.permission in granted for granted in WORKSPACE_ROLE_PERMISSIONS.values()), name


def test_known_policies() -> None:
    table = PolicyTable.from_services(_services())
    assert table.get("/adplane.v1.AuthService/Login") == AccessPolicy(PolicyKind.PUBLIC)
    assert table.get("/adplane.v1.AuthService/GetCurrentUser") == AccessPolicy(PolicyKind.AUTHENTICATED)
    assert table.get("/adplane.v1.WorkspaceService/CreateWorkspace") == AccessPolicy(
        PolicyKind.SYSTEM_PERMISSION, WORKSPACES_MANAGE
    )
    assert table.get("/adplane.v1.WorkspaceService/AddWorkspaceMember") == AccessPolicy(
        PolicyKind.WORKSPACE_PERMISSION, MEMBERS_MANAGE
    )


def _service(*methods: tuple[str, access_pb2.AccessPolicy | None]) -> ServiceDescriptor:
    """A service, in a pool of its own, whose methods carry the given policies (None: no option)."""
    pool = descriptor_pool.DescriptorPool()
    name = f"t{uuid.uuid4().hex[:8]}"
    proto = descriptor_pb2.FileDescriptorProto(name=f"{name}/test.proto", package=f"{name}.v1", syntax="proto3")
    proto.message_type.add(name="Empty")
    service = proto.service.add(name="TestService")
    for method_name, policy in methods:
        method = service.method.add(name=method_name, input_type=f".{name}.v1.Empty", output_type=f".{name}.v1.Empty")
        if policy is not None:
            declared = method.options.Extensions[access_pb2.access]
            declared.SetInParent()
            declared.CopyFrom(policy)
    pool.Add(proto)
    return pool.FindServiceByName(f"{name}.v1.TestService")


def test_built_service_with_policies_is_accepted() -> None:
    service = _service(
        ("Open", access_pb2.AccessPolicy(public=True)),
        ("Read", access_pb2.AccessPolicy(workspace_permission=WORKSPACES_READ)),
    )
    table = PolicyTable.from_services([service])
    assert table.get(f"/{service.full_name}/Open") == AccessPolicy(PolicyKind.PUBLIC)
    assert table.get(f"/{service.full_name}/Read") == AccessPolicy(PolicyKind.WORKSPACE_PERMISSION, WORKSPACES_READ)


def test_method_without_a_policy_is_refused() -> None:
    service = _service(("Open", access_pb2.AccessPolicy(public=True)), ("Forgotten", None))
    with pytest.raises(ValueError, match="Forgotten"):
        PolicyTable.from_services([*_services(), service])


def test_method_with_an_empty_policy_is_refused() -> None:
    service = _service(("Empty", access_pb2.AccessPolicy()))
    # An empty message still sets the option: the check must look at the rule, not the option.
    assert service.methods_by_name["Empty"].GetOptions().HasExtension(access_pb2.access)
    with pytest.raises(ValueError, match="Empty"):
        PolicyTable.from_services([service])
