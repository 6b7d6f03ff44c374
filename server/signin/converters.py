"""proto <-> schema for AuthService."""

from adplane.v1 import auth_service_pb2 as pb
from server.api_helpers import to_timestamp, validated
from server.signin.schemas import CurrentUserSchema, LoginRequestSchema, RefreshTokenRequestSchema, TokenPairSchema
from server.users.converters import user_to_proto
from server.workspaces.converters import membership_to_proto


def login_request_from_proto(request: pb.LoginRequest) -> LoginRequestSchema:
    return validated(LoginRequestSchema, {"email": request.email, "password": request.password})


def refresh_request_from_proto(request: pb.RefreshTokenRequest | pb.LogoutRequest) -> RefreshTokenRequestSchema:
    return validated(RefreshTokenRequestSchema, {"refresh_token": request.refresh_token})


def tokens_to_proto(tokens: TokenPairSchema) -> pb.TokenPair:
    return pb.TokenPair(
        access_token=tokens.access_token,
        access_token_expire_time=to_timestamp(tokens.access_token_expires_at),
        refresh_token=tokens.refresh_token,
        refresh_token_expire_time=to_timestamp(tokens.refresh_token_expires_at),
        token_type="Bearer",  # noqa: S106 - the scheme name, not a secret
    )


def current_user_to_proto(current: CurrentUserSchema) -> pb.GetCurrentUserResponse:
    return pb.GetCurrentUserResponse(
        user=user_to_proto(current.user) if current.user else None,
        system_permissions=sorted(current.system_permissions),
        workspaces=[membership_to_proto(m) for m in current.workspaces],
        api_key_id=str(current.api_key_id) if current.api_key_id else "",
    )
