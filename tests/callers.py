"""Signed-in test callers: real users created through the services and signed in with Login."""

import dataclasses
import uuid
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass

from argon2 import PasswordHasher
from sqlalchemy import update

from server.auth.passwords import Passwords
from server.auth.roles import WorkspaceRole
from server.composition import Infrastructure
from server.signin.schemas import LoginRequestSchema
from server.users.models import User
from server.users.schemas import UserCreateRequestSchema
from server.workspaces.models import WorkspaceUser

PASSWORD = "correct horse battery staple"

# Argon2id with the cheapest parameters. A production-cost hash and its check take about 0.4 s of
# CPU, and the suite signs in hundreds of callers; the production parameters are tested where they
# matter (tests/users/test_service.py, tests/auth/test_login.py: a sign-in rehashes a cheap hash).
CHEAP_PASSWORDS = Passwords(PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))


@dataclass(frozen=True)
class Caller:
    user_id: uuid.UUID
    email: str
    access_token: str
    refresh_token: str

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.access_token}"),)

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.access_token}"}


type MakeCaller = Callable[..., Awaitable[Caller]]


async def make_caller(
    infrastructure: Infrastructure,
    *,
    superuser: bool = False,
    roles: Collection[str] = (),
    memberships: Mapping[uuid.UUID, WorkspaceRole] | None = None,
    email: str | None = None,
) -> Caller:
    """A user created through the users service (its password hashed cheaply, CHEAP_PASSWORDS) and
    signed in through the sign-in service."""
    infrastructure = dataclasses.replace(infrastructure, passwords=CHEAP_PASSWORDS)
    email = email or f"user-{uuid.uuid4().hex[:10]}@example.com"
    async with infrastructure.unit_of_work() as uow:
        user = await uow.users.create_user(
            UserCreateRequestSchema.model_validate({"email": email, "full_name": "Test User", "password": PASSWORD})
        )
        if roles:
            await uow.users.set_user_roles(user.id, list(roles))
        if superuser:
            await uow.session.execute(update(User).where(User.id == user.id).values(is_superuser=True))
        for workspace_id, role in (memberships or {}).items():
            uow.session.add(WorkspaceUser(workspace_id=workspace_id, user_id=user.id, role=role))
    async with infrastructure.unit_of_work() as uow:
        tokens = await uow.signin.login(LoginRequestSchema(email=email, password=PASSWORD), address="192.0.2.1")
    return Caller(user_id=user.id, email=email, access_token=tokens.access_token, refresh_token=tokens.refresh_token)
