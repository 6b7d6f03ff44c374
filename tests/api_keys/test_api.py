"""ApiKeyServicer: the translation between the contract and the service."""

import uuid
from collections.abc import Iterator
from typing import cast

import pytest

from adplane.v1 import api_key_service_pb2 as pb
from server.api_keys.api import ApiKeyServicer, Context
from server.auth.principal import Principal, PrincipalKind, set_current_principal
from server.composition import Infrastructure
from server.exceptions import InvalidRequestException, UnauthenticatedException

# The servicer never touches its context: errors are raised for the interceptor to map.
NO_CONTEXT = cast(Context, None)


@pytest.fixture
def servicer(infrastructure: Infrastructure) -> ApiKeyServicer:
    return ApiKeyServicer(infrastructure.unit_of_work)


@pytest.fixture
def as_api_key() -> Iterator[Principal]:
    principal = Principal(
        kind=PrincipalKind.API_KEY, id=uuid.uuid4(), system_permissions=frozenset({"api_keys.manage"})
    )
    set_current_principal(principal)
    yield principal
    set_current_principal(None)


async def test_create_list_and_revoke_through_the_contract(servicer: ApiKeyServicer, as_api_key: Principal) -> None:
    created = await servicer.CreateApiKey(
        pb.CreateApiKeyRequest(api_key=pb.ApiKey(name="Exporter", role_names=["staff"]), request_id="r1"), NO_CONTEXT
    )
    assert created.secret.startswith("adp_")
    assert created.api_key.prefix == created.secret[:12]
    assert list(created.api_key.role_names) == ["staff"]
    assert created.api_key.created_by_user_id == ""
    assert created.api_key.HasField("create_time")
    assert not created.api_key.HasField("revoke_time")

    replayed = await servicer.CreateApiKey(
        pb.CreateApiKeyRequest(api_key=pb.ApiKey(name="Exporter", role_names=["staff"]), request_id="r1"), NO_CONTEXT
    )
    assert replayed.secret == ""
    assert replayed.api_key == created.api_key

    listed = await servicer.ListApiKeys(pb.ListApiKeysRequest(), NO_CONTEXT)
    assert list(listed.api_keys) == [created.api_key]
    assert listed.next_page_token == ""

    revoked = await servicer.RevokeApiKey(pb.RevokeApiKeyRequest(api_key_id=created.api_key.id), NO_CONTEXT)
    assert revoked.api_key.HasField("revoke_time")
    assert list((await servicer.ListApiKeys(pb.ListApiKeysRequest(), NO_CONTEXT)).api_keys) == []
    assert len((await servicer.ListApiKeys(pb.ListApiKeysRequest(include_revoked=True), NO_CONTEXT)).api_keys) == 1


@pytest.mark.parametrize(
    ("api_key", "field"),
    [
        (pb.ApiKey(name=""), "api_key.name"),
        (pb.ApiKey(name="ok", role_names=[""]), "api_key.role_names[0]"),
        (pb.ApiKey(name="ok", role_names=["nope"]), "api_key.role_names"),
    ],
)
async def test_invalid_create_names_the_request_field(
    servicer: ApiKeyServicer, as_api_key: Principal, api_key: pb.ApiKey, field: str
) -> None:
    with pytest.raises(InvalidRequestException) as raised:
        await servicer.CreateApiKey(pb.CreateApiKeyRequest(api_key=api_key), NO_CONTEXT)
    assert [v.field for v in raised.value.violations] == [field]


async def test_malformed_id_and_negative_page_size_are_invalid(servicer: ApiKeyServicer) -> None:
    with pytest.raises(InvalidRequestException) as raised:
        await servicer.RevokeApiKey(pb.RevokeApiKeyRequest(api_key_id="adp_nope"), NO_CONTEXT)
    assert raised.value.violations[0].reason == "INVALID_ID"
    with pytest.raises(InvalidRequestException) as raised:
        await servicer.ListApiKeys(pb.ListApiKeysRequest(page_size=-1), NO_CONTEXT)
    assert raised.value.violations[0].field == "page_size"


async def test_create_needs_a_caller(servicer: ApiKeyServicer) -> None:
    with pytest.raises(UnauthenticatedException):
        await servicer.CreateApiKey(pb.CreateApiKeyRequest(api_key=pb.ApiKey(name="Anonymous")), NO_CONTEXT)
