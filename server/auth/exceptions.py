from server.exceptions import PermissionDeniedException, UnauthenticatedException


class InvalidCredentialsException(UnauthenticatedException):
    """Wrong email or password; deliberately silent about which."""

    reason = "INVALID_CREDENTIALS"

    def __init__(self) -> None:
        super().__init__("wrong email or password")


class InvalidRefreshTokenException(UnauthenticatedException):
    reason = "INVALID_REFRESH_TOKEN"

    def __init__(self) -> None:
        super().__init__("the refresh token is invalid, expired or revoked; sign in again")


class RefreshTokenReusedException(UnauthenticatedException):
    reason = "REFRESH_TOKEN_REUSED"

    def __init__(self) -> None:
        super().__init__("this refresh token was already used; every token of the sign-in is revoked")


class CredentialsRequiredException(UnauthenticatedException):
    reason = "CREDENTIALS_REQUIRED"

    def __init__(self) -> None:
        super().__init__("this call needs `authorization: Bearer <token>` or `x-api-key`")


class CallerRevokedException(UnauthenticatedException):
    """The token or key was valid once, but its user, sign-in or key is no longer."""

    reason = "CREDENTIALS_REVOKED"

    def __init__(self) -> None:
        super().__init__("these credentials were revoked; sign in again")


class MissingPermissionException(PermissionDeniedException):
    reason = "MISSING_PERMISSION"

    def __init__(self, permission: str) -> None:
        super().__init__(f"this call needs the permission {permission!r}", metadata={"permission": permission})
