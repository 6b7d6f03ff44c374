import uuid
from collections.abc import Collection

from server.exceptions import FieldViolation, InvalidRequestException, NotFoundException


class ApiKeyNotFoundException(NotFoundException):
    reason = "API_KEY_NOT_FOUND"

    def __init__(self, api_key_id: uuid.UUID) -> None:
        super().__init__(f"API key {api_key_id} not found", metadata={"api_key_id": str(api_key_id)})


class UnknownRoleException(InvalidRequestException):
    """Some of the role names a key asks for are not system roles (see UserService.ListRoles).

    The same error as `server.users.exceptions.UnknownRoleException`, but on the field the
    CreateApiKey request carries the names in.
    """

    def __init__(self, names: Collection[str]) -> None:
        unknown = sorted(set(names))
        listed = ", ".join(repr(name) for name in unknown)
        super().__init__(
            [FieldViolation(field="api_key.role_names", description=f"unknown roles: {listed}", reason="UNKNOWN_ROLE")],
            reason="UNKNOWN_ROLE",
        )
        self.role_names = unknown
        self.metadata["role_names"] = ",".join(unknown)
