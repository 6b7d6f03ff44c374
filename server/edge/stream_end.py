"""The reason a watch stream ends, for REST callers: Server-Sent Events through Envoy.

Envoy's gRPC-JSON transcoder writes each message of a server stream as `data: <JSON>`; the status
the stream ends with arrives in trailers, which it drops once a body has started (and the Lua
filter cannot add body data at trailers). An SSE client would see a bare end of the body and
could not tell "resume" from "sign in again" from "stop". So, for calls that came through the REST
edge (the Lua filter marks them with `REST_HEADER`), an error that ends a stream which has already
sent a message is first sent as one more message, with its google.rpc.Status in the response's
`stream_end` field; the edge rewrites that message into `event: error` + `data: <Status JSON>`
(envoy/envoy.yaml, `envoy_on_response`). The call then ends with the same status as always.

gRPC and gRPC-Web callers are not marked and get only the status, as before. An error before the
first message stays a plain error reply (HTTP status + Status JSON), like every other call's.
"""

from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.message import Message

from server.edge.local_replies import REST_HEADER
from server.interceptors.errors import status_for
from server.interceptors.pipeline import Context, Method, Step, StreamBehavior, UnaryBehavior, call_metadata

# The response field that carries the status; a google.rpc.Status.
STREAM_END_FIELD = "stream_end"


def _end_message(method: Method) -> Callable[..., Message] | None:
    """The class of the method's responses, if they can carry a stream end."""
    full_name = method.name.lstrip("/").replace("/", ".")
    try:
        output = descriptor_pool.Default().FindMethodByName(full_name).output_type
    except KeyError:
        return None
    end = output.fields_by_name.get(STREAM_END_FIELD)
    if end is None or end.message_type is None or end.message_type.full_name != "google.rpc.Status":
        return None
    return message_factory.GetMessageClass(output)


def _through_rest_edge(context: Context) -> bool:
    return any(key == REST_HEADER for key, _ in call_metadata(context))


class StreamEndForRest(Step):
    """Inside ErrorMapping (which still ends the call with the status), outside authorization
    (whose re-checks end streams too)."""

    def unary(self, method: Method, behavior: UnaryBehavior) -> UnaryBehavior:
        return behavior

    def server_stream(self, method: Method, behavior: StreamBehavior) -> StreamBehavior:
        end_message = _end_message(method)
        if end_message is None:
            return behavior

        async def with_end(stream: AsyncIterator[Any]) -> AsyncIterator[Any]:
            started = False
            try:
                async for response in stream:
                    started = True
                    yield response
            except grpc.aio.AbortError:
                raise
            except Exception as error:
                if started:
                    yield end_message(**{STREAM_END_FIELD: status_for(error)})
                raise

        def ended(request: Any, context: Context) -> AsyncIterator[Any]:
            stream = behavior(request, context)
            # gRPC and gRPC-Web streams pass untouched: no layer per message.
            return with_end(stream) if _through_rest_edge(context) else stream

        return ended
