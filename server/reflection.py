"""gRPC server reflection, v1 and v1alpha, answering with the proto files as buf built them.

grpcio-reflection only ships v1alpha and serves files re-serialized from Python's descriptor pool,
which drops the comments. Here the files come from `generated/descriptors.binpb` (built with source
info), so `grpcurl describe` shows each RPC's and field's documentation. v1 and v1alpha are the same
protocol under two package names with identical messages, so one servicer answers both; the v1
file descriptor is v1alpha's renamed, which is what grpc's own v1 file is.
"""

from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import FileDescriptor
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

V1ALPHA = "grpc.reflection.v1alpha.ServerReflection"
V1 = "grpc.reflection.v1.ServerReflection"
_V1_FILE = "grpc/reflection/v1/reflection.proto"


def _proto_of(file: FileDescriptor) -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto()
    file.CopyToProto(proto)
    return proto


def _v1_file() -> descriptor_pb2.FileDescriptorProto:
    proto = _proto_of(reflection_pb2.DESCRIPTOR)
    proto.name = _V1_FILE
    proto.package = "grpc.reflection.v1"
    for message in proto.message_type:
        for field in message.field:
            if field.HasField("type_name"):
                field.type_name = field.type_name.replace(".grpc.reflection.v1alpha.", ".grpc.reflection.v1.")
    for service in proto.service:
        for method in service.method:
            method.input_type = method.input_type.replace(".v1alpha.", ".v1.")
            method.output_type = method.output_type.replace(".v1alpha.", ".v1.")
    return proto


class DescriptorFiles:
    """The files reflection serves: by name, each one's serialized FileDescriptorProto (comments kept)."""

    def __init__(self, descriptor_set_path: Path) -> None:
        descriptor_set = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set_path.read_bytes())
        files = list(descriptor_set.file)
        known = {file.name for file in files}
        # Health and reflection themselves, from the packages that implement them.
        for extra in (_proto_of(health_pb2.DESCRIPTOR), _proto_of(reflection_pb2.DESCRIPTOR), _v1_file()):
            if extra.name not in known:
                files.append(extra)
        self.pool = descriptor_pool.DescriptorPool()
        self.serialized: dict[str, bytes] = {}
        for file in files:
            self.pool.Add(file)
            self.serialized[file.name] = file.SerializeToString()

    def with_dependencies(self, name: str) -> list[bytes]:
        """The file and everything it imports, the file first (as grpcurl expects)."""
        ordered: list[str] = []
        pending = [name]
        while pending:
            current = pending.pop()
            if current in ordered:
                continue
            ordered.append(current)
            pending.extend(dependency.name for dependency in self.pool.FindFileByName(current).dependencies)
        return [self.serialized[file] for file in ordered]


class ReflectionServicer:
    def __init__(self, files: DescriptorFiles, service_names: Iterable[str]) -> None:
        self._files = files
        self._services = sorted({*service_names, V1ALPHA, V1})

    def _file_of_symbol(self, symbol: str) -> str:
        pool = self._files.pool
        try:
            return str(pool.FindFileContainingSymbol(symbol).name)
        except KeyError:
            # The pool finds services but not their methods (`adplane.v1.WorkspaceService.GetWorkspace`).
            service_name, _, method = symbol.rpartition(".")
            service = pool.FindServiceByName(service_name)
            if method not in service.methods_by_name:
                raise
            return str(service.file.name)

    def _file_containing(self, request: reflection_pb2.ServerReflectionRequest) -> str:
        pool = self._files.pool
        match request.WhichOneof("message_request"):
            case "file_by_filename":
                return str(pool.FindFileByName(request.file_by_filename).name)
            case "file_containing_symbol":
                return self._file_of_symbol(request.file_containing_symbol)
            case "file_containing_extension":
                wanted = request.file_containing_extension
                extension = pool.FindExtensionByNumber(
                    pool.FindMessageTypeByName(wanted.containing_type), wanted.extension_number
                )
                return str(pool.FindFileContainingSymbol(extension.full_name).name)
        raise ValueError(request.WhichOneof("message_request"))

    def _answer(self, request: reflection_pb2.ServerReflectionRequest) -> reflection_pb2.ServerReflectionResponse:
        response = reflection_pb2.ServerReflectionResponse(original_request=request)
        kind = request.WhichOneof("message_request")
        try:
            if kind == "list_services":
                response.list_services_response.service.extend(
                    reflection_pb2.ServiceResponse(name=name) for name in self._services
                )
            elif kind == "all_extension_numbers_of_type":
                pool = self._files.pool
                message = pool.FindMessageTypeByName(request.all_extension_numbers_of_type)
                response.all_extension_numbers_response.base_type_name = message.full_name
                response.all_extension_numbers_response.extension_number.extend(
                    sorted(extension.number for extension in pool.FindAllExtensions(message))
                )
            elif kind is None:
                response.error_response.error_code = grpc.StatusCode.INVALID_ARGUMENT.value[0]
                response.error_response.error_message = "no request"
            else:
                name = self._file_containing(request)
                response.file_descriptor_response.file_descriptor_proto.extend(self._files.with_dependencies(name))
        except KeyError as error:
            response.error_response.error_code = grpc.StatusCode.NOT_FOUND.value[0]
            response.error_response.error_message = str(error.args[0] if error.args else "not found")
        return response

    async def ServerReflectionInfo(
        self, requests: AsyncIterator[reflection_pb2.ServerReflectionRequest], context: Any
    ) -> AsyncIterator[reflection_pb2.ServerReflectionResponse]:
        async for request in requests:
            yield self._answer(request)


def add_reflection(server: grpc.aio.Server, service_names: Iterable[str], *, descriptor_set_path: Path) -> None:
    """Serve reflection v1 and v1alpha for `service_names` (health and reflection are added)."""
    servicer = ReflectionServicer(DescriptorFiles(descriptor_set_path), service_names)
    method = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler(name, {"ServerReflectionInfo": method}) for name in (V1ALPHA, V1)]
    )
