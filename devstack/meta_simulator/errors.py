"""Graph API errors as the simulator answers them: Graph's envelope, status and codes."""

import secrets
from dataclasses import dataclass, field


def fbtrace_id() -> str:
    return "A" + secrets.token_urlsafe(8)


@dataclass(eq=False)
class GraphError(Exception):
    """Raised by a route; becomes `{"error": {...}}` with `status` and extra `headers`."""

    status: int
    code: int
    message: str
    type: str = "OAuthException"
    subcode: int | None = None
    is_transient: bool = False
    headers: dict[str, str] = field(default_factory=dict)

    def body(self) -> dict[str, object]:
        error: dict[str, object] = {
            "message": self.message,
            "type": self.type,
            "code": self.code,
            "fbtrace_id": fbtrace_id(),
        }
        if self.subcode is not None:
            error["error_subcode"] = self.subcode
        if self.is_transient:
            error["is_transient"] = True
        return {"error": error}


def invalid_parameter(message: str) -> GraphError:
    return GraphError(400, 100, f"(#100) {message}")


def unknown_object(object_id: str, method: str) -> GraphError:
    # Graph answers the same for a missing object and for one the caller may not see.
    return GraphError(
        400,
        100,
        f"Unsupported {method.lower()} request. Object with ID '{object_id}' does not exist, cannot be loaded "
        "due to missing permissions, or does not support this operation.",
        type="GraphMethodException",
        subcode=33,
    )


def unknown_path(path: str) -> GraphError:
    return GraphError(400, 2500, f"Unknown path components: {path}")


def permission_denied() -> GraphError:
    return GraphError(403, 200, "(#200) Requires business_management permission to manage the object")


def missing_token() -> GraphError:
    return GraphError(400, 104, "An access token is required to request this resource.")


def invalid_token() -> GraphError:
    return GraphError(400, 190, "Invalid OAuth access token - Cannot parse access token")


def revoked_token() -> GraphError:
    return GraphError(
        400,
        190,
        "Error validating access token: The session has been invalidated because the user changed their "
        "password or Facebook has changed the session for security reasons.",
        subcode=460,
    )
