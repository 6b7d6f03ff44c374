"""Which RPCs are reads, writes and streams, read from the contract.

A read is a unary RPC whose `google.api.http` rule is GET: AIP-131/132 (Get, List) make GET the
verb of methods that change nothing, and the contract test holds every RPC to the AIPs. Reads may
be retried by the edge on any failure (`server/edge/envoy.py`) and have a rate limit of their own
(`server/interceptors/rate_limit.py`); a stream is a server-streaming RPC; anything else is a write.
"""

from collections.abc import Iterable
from enum import StrEnum

from google.api import annotations_pb2, http_pb2
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.descriptor_pb2 import FileDescriptorSet, MethodOptions


class MethodClass(StrEnum):
    READ = "read"
    WRITE = "write"
    STREAM = "stream"


def _is_get(options: MethodOptions) -> bool:
    if not options.HasExtension(annotations_pb2.http):
        return False
    rule: http_pb2.HttpRule = options.Extensions[annotations_pb2.http]
    return bool(rule.WhichOneof("pattern") == "get")


def classify(options: MethodOptions, *, server_streaming: bool) -> MethodClass:
    if server_streaming:
        return MethodClass.STREAM
    return MethodClass.READ if _is_get(options) else MethodClass.WRITE


def method_classes(services: Iterable[ServiceDescriptor]) -> dict[str, MethodClass]:
    """Full method name (`/adplane.v1.AccountService/GetAccount`) -> its class."""
    return {
        f"/{service.full_name}/{method.name}": classify(
            method.GetOptions(),
            server_streaming=method.server_streaming,
        )
        for service in services
        for method in service.methods
    }


def method_classes_in(descriptor_set: FileDescriptorSet, package: str) -> dict[str, MethodClass]:
    """The same, from a descriptor set (what Envoy is configured from)."""
    return {
        f"/{file.package}.{service.name}/{method.name}": classify(
            MethodOptions.FromString(method.options.SerializeToString()),
            server_streaming=method.server_streaming,
        )
        for file in descriptor_set.file
        if file.package == package
        for service in file.service
        for method in service.method
    }
