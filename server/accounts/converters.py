"""proto <-> schema for ad accounts; the one place that knows both shapes."""

import uuid
from typing import Any

from adplane.v1 import account_pb2, account_service_pb2
from server.accounts.models import AccountStatus, AccountUserTask, MetaAccountStatus
from server.accounts.schemas import (
    AccountListRequestSchema,
    AccountMoveRequestSchema,
    AccountResponseSchema,
    AccountUpdateRequestSchema,
    AccountUserAssignRequestSchema,
    AccountUserResponseSchema,
)
from server.api_helpers import enum_from_proto, enum_to_proto, parse_id, timestamp_fields, to_timestamp, validated
from server.requests.schemas import AccountCreationPayload, SpendCapChangePayload

_STATUS_NAMES = {int(number): name for name, number in account_pb2.AccountStatus.items()}
_STATUS_PREFIX = "ACCOUNT_STATUS"
_META_STATUS_NAMES = {int(number): name for name, number in account_pb2.MetaAccountStatus.items()}
_META_STATUS_PREFIX = "META_ACCOUNT_STATUS"
_TASK_NAMES = {int(number): name for name, number in account_pb2.AccountUserTask.items()}
_TASK_PREFIX = "ACCOUNT_USER_TASK"


def status_from_proto(number: int) -> str | None:
    return enum_from_proto(number, names=_STATUS_NAMES, prefix=_STATUS_PREFIX)


def meta_status_from_proto(number: int) -> str | None:
    return enum_from_proto(number, names=_META_STATUS_NAMES, prefix=_META_STATUS_PREFIX)


def task_from_proto(number: int) -> str | None:
    return enum_from_proto(number, names=_TASK_NAMES, prefix=_TASK_PREFIX)


def _task_to_proto(task: AccountUserTask) -> account_pb2.AccountUserTask.ValueType:
    return account_pb2.AccountUserTask.Value(enum_to_proto(task, prefix=_TASK_PREFIX))


_STATUS_NUMBERS = {
    status: account_pb2.AccountStatus.Value(enum_to_proto(status, prefix=_STATUS_PREFIX)) for status in AccountStatus
}
_META_STATUS_NUMBERS: dict[MetaAccountStatus | None, account_pb2.MetaAccountStatus.ValueType] = {
    status: account_pb2.MetaAccountStatus.Value(enum_to_proto(status, prefix=_META_STATUS_PREFIX))
    for status in MetaAccountStatus
}
_META_STATUS_NUMBERS[None] = account_pb2.MetaAccountStatus.META_ACCOUNT_STATUS_UNSPECIFIED


def account_fields(account: AccountResponseSchema) -> dict[str, Any]:
    """The fields of an Account message, for a response's constructor (one account or a list).

    Sub-messages go in as dicts and enums as numbers looked up once: upb fills them in place (the
    stubs only know message types). A list passes these dicts to the response's constructor: no
    Account message is built and then copied into the repeated field, which counts at 50 a page.
    """
    fields: dict[str, Any] = {
        "id": str(account.id),
        "workspace_id": str(account.workspace_id),
        "business_manager_id": str(account.business_manager_id),
        "meta_account_id": account.meta_account_id or "",
        "name": account.name,
        "currency": account.currency,
        "timezone": account.timezone,
        "amount_spent": {"currency": account.currency, "amount_minor": account.amount_spent_minor},
        "status": _STATUS_NUMBERS[account.status],
        "meta_status": _META_STATUS_NUMBERS[account.meta_status],
        "disable_reason": account.disable_reason,
        "create_time": timestamp_fields(account.created_at),
        "update_time": timestamp_fields(account.updated_at),
        "etag": account.etag,
    }
    if account.spend_cap_minor is not None:
        fields["spend_cap"] = {"currency": account.currency, "amount_minor": account.spend_cap_minor}
    if account.synced_at is not None:
        fields["sync_time"] = timestamp_fields(account.synced_at)
    return fields


def account_user_to_proto(account_user: AccountUserResponseSchema) -> account_pb2.AccountUser:
    return account_pb2.AccountUser(
        user_id=str(account_user.user_id),
        email=account_user.email,
        tasks=[_task_to_proto(task) for task in account_user.tasks],
        update_time=to_timestamp(account_user.updated_at),
    )


def account_request_from_proto(request: account_service_pb2.RequestAccountRequest) -> AccountCreationPayload:
    draft = request.account
    return validated(
        AccountCreationPayload,
        {
            "name": draft.name,
            "currency": draft.currency,
            "timezone": draft.timezone,
            "business_manager_id": draft.business_manager_id,
        },
        fields={
            "name": "account.name",
            "currency": "account.currency",
            "timezone": "account.timezone",
            "business_manager_id": "account.business_manager_id",
        },
    )


def spend_cap_request_from_proto(
    request: account_service_pb2.RequestSpendCapChangeRequest, *, account_id: uuid.UUID
) -> SpendCapChangePayload:
    return validated(
        SpendCapChangePayload,
        {
            "account_id": account_id,
            "currency": request.spend_cap.currency,
            "amount_minor": request.spend_cap.amount_minor,
        },
        fields={"currency": "spend_cap.currency", "amount_minor": "spend_cap.amount_minor"},
    )


def list_request_from_proto(
    request: account_service_pb2.ListAccountsRequest | account_service_pb2.ListAllAccountsRequest,
) -> AccountListRequestSchema:
    data: dict[str, Any] = {
        "page_size": request.page_size,
        "page_token": request.page_token,
        "business_manager_id": request.business_manager_id or None,
        "status": status_from_proto(request.status),
        "meta_status": meta_status_from_proto(request.meta_status),
    }
    if isinstance(request, account_service_pb2.ListAllAccountsRequest):
        data["workspace_id"] = request.workspace_id or None
    return validated(AccountListRequestSchema, data)


def assign_request_from_proto(request: account_service_pb2.AssignAccountUserRequest) -> AccountUserAssignRequestSchema:
    return validated(
        AccountUserAssignRequestSchema,
        {"tasks": [task_from_proto(task) for task in request.assignment.tasks]},
        fields={"tasks": "assignment.tasks"},
    )


def update_request_from_proto(request: account_service_pb2.UpdateAccountRequest) -> AccountUpdateRequestSchema:
    paths = list(request.update_mask.paths)
    data: dict[str, Any] = {"update_mask": paths, "etag": request.account.etag}
    if "name" in paths:
        data["name"] = request.account.name
    if "status" in paths:
        # An unset status in the mask is a client error, not "leave it": the schema rejects it.
        data["status"] = status_from_proto(request.account.status) or "unspecified"
    return validated(
        AccountUpdateRequestSchema,
        data,
        fields={
            "name": "account.name",
            "status": "account.status",
            "etag": "account.etag",
            "update_mask": "update_mask.paths",
        },
    )


def move_request_from_proto(request: account_service_pb2.MoveAccountToWorkspaceRequest) -> AccountMoveRequestSchema:
    target_workspace_id = parse_id(request.target_workspace_id, field="target_workspace_id")
    return validated(AccountMoveRequestSchema, {"target_workspace_id": target_workspace_id, "etag": request.etag})
