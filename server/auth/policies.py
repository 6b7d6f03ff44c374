"""The access-policy table, read once at start-up from the `(adplane.v1.access)` method options."""

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum

from google.protobuf.descriptor import ServiceDescriptor

from adplane.v1 import access_pb2


class PolicyKind(StrEnum):
    PUBLIC = "public"
    AUTHENTICATED = "authenticated"
    SYSTEM_PERMISSION = "system_permission"
    WORKSPACE_PERMISSION = "workspace_permission"


@dataclass(frozen=True)
class AccessPolicy:
    kind: PolicyKind
    permission: str = ""


# Infrastructure services every caller (load balancers, grpcurl) may use without credentials.
PUBLIC_SERVICES = (
    "grpc.health.v1.Health",
    "grpc.reflection.v1alpha.ServerReflection",
    "grpc.reflection.v1.ServerReflection",
)


class PolicyTable:
    def __init__(self, policies: dict[str, AccessPolicy]) -> None:
        self._policies = policies

    @classmethod
    def from_services(cls, services: Iterable[ServiceDescriptor]) -> "PolicyTable":
        policies: dict[str, AccessPolicy] = {}
        for service in services:
            for method in service.methods:
                options = method.GetOptions()
                if not options.HasExtension(access_pb2.access):
                    raise ValueError(f"{method.full_name} declares no access policy")
                declared = options.Extensions[access_pb2.access]
                rule = declared.WhichOneof("rule")
                if rule is None:
                    raise ValueError(f"{method.full_name} declares an empty access policy")
                kind = PolicyKind(rule)
                permission = getattr(declared, rule) if kind in _WITH_PERMISSION else ""
                policies[f"/{service.full_name}/{method.name}"] = AccessPolicy(kind=kind, permission=permission)
        return cls(policies)

    def get(self, method: str) -> AccessPolicy | None:
        """The policy of a full method name (`/adplane.v1.X/Y`); None for methods without one."""
        return self._policies.get(method)

    def __iter__(self) -> Iterator[tuple[str, AccessPolicy]]:
        return iter(self._policies.items())


_WITH_PERMISSION = (PolicyKind.SYSTEM_PERMISSION, PolicyKind.WORKSPACE_PERMISSION)


def is_public_infrastructure(method: str) -> bool:
    return method.lstrip("/").split("/", 1)[0] in PUBLIC_SERVICES
