"""What Envoy answers when it replies itself: the same `google.rpc.Status` JSON as the server's errors.

Unknown routes and methods, malformed JSON, unknown query parameters, oversized headers or bodies,
a server that cannot be reached: Envoy's own replies are plain text by default. The
`local_reply_config` rendered here maps each HTTP status Envoy produces to a Status body with the
matching canonical code and an `ErrorInfo` (domain `adplane`) naming the reason. Where Envoy's text
helps the caller and tells nothing of the inside (a malformed body, an unknown field) it becomes the
message; otherwise a fixed message replaces it (Envoy's texts for 5xx name upstream internals).

gRPC and gRPC-Web callers are left out: Envoy answers them with grpc-status trailers, not a body.
The Lua filter of envoy.yaml marks REST requests with `REST_HEADER`. Replies a filter has already
written as Status JSON (the Lua header check) mark the request with `EDGE_JSON_HEADER` and pass
through unchanged.
"""

from dataclasses import dataclass
from typing import Any

from google.rpc import code_pb2

EDGE_JSON_HEADER = "x-adplane-edge-json"
REST_HEADER = "x-adplane-edge-rest"
LOCAL_REPLY_BODY = "%LOCAL_REPLY_BODY%"
_GRPC_PREFIX = {"prefix": "application/grpc"}


@dataclass(frozen=True)
class EdgeError:
    status: int
    code: int
    reason: str
    # None: Envoy's own text (helpful, nothing internal in it).
    message: str | None = None


EDGE_ERRORS = (
    EdgeError(400, code_pb2.INVALID_ARGUMENT, "INVALID_REQUEST"),
    EdgeError(404, code_pb2.NOT_FOUND, "ROUTE_NOT_FOUND"),
    EdgeError(405, code_pb2.NOT_FOUND, "ROUTE_NOT_FOUND", "no such method on this path"),
    EdgeError(408, code_pb2.DEADLINE_EXCEEDED, "REQUEST_TIMEOUT", "the request was not received in time"),
    EdgeError(413, code_pb2.INVALID_ARGUMENT, "REQUEST_BODY_TOO_LARGE", "the request body is larger than the limit"),
    EdgeError(429, code_pb2.RESOURCE_EXHAUSTED, "TOO_MANY_REQUESTS", "too many requests"),
    EdgeError(
        431, code_pb2.INVALID_ARGUMENT, "REQUEST_HEADERS_TOO_LARGE", "the request headers are larger than the limit"
    ),
    EdgeError(500, code_pb2.INTERNAL, "EDGE_ERROR", "the edge could not handle the request"),
    EdgeError(502, code_pb2.UNAVAILABLE, "SERVICE_UNAVAILABLE", "the service is unavailable; retry later"),
    EdgeError(503, code_pb2.UNAVAILABLE, "SERVICE_UNAVAILABLE", "the service is unavailable; retry later"),
    EdgeError(504, code_pb2.DEADLINE_EXCEEDED, "UPSTREAM_TIMEOUT", "the service did not answer in time"),
)
# Any other status Envoy makes itself (>= 400).
FALLBACK = EdgeError(0, code_pb2.UNKNOWN, "EDGE_ERROR", "the edge refused the request")


def _status_filter(op: str, value: int) -> dict[str, Any]:
    return {"status_code_filter": {"comparison": {"op": op, "value": {"default_value": value, "runtime_key": ""}}}}


# The transcoder rewrites a REST request's content-type to application/grpc before it can fail, so the
# Lua filter marks non-gRPC requests first (REST_HEADER); requests refused before any filter ran
# (header limits, malformed HTTP) still have their own content-type.
_NOT_GRPC: dict[str, Any] = {
    "or_filter": {
        "filters": [
            {"header_filter": {"header": {"name": REST_HEADER, "present_match": True}}},
            {"header_filter": {"header": {"name": "content-type", "present_match": True, "invert_match": True}}},
            {
                "header_filter": {
                    "header": {
                        "name": "content-type",
                        "string_match": {"prefix": "application/grpc"},
                        "invert_match": True,
                    }
                }
            },
        ]
    }
}


def _body(error: EdgeError) -> dict[str, Any]:
    return {
        "json_format": {
            "code": error.code,
            "message": error.message if error.message is not None else LOCAL_REPLY_BODY,
            "details": [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": error.reason,
                    "domain": "adplane",
                    "metadata": {},
                }
            ],
        },
        "content_type": "application/json",
    }


def local_reply_config() -> dict[str, Any]:
    """The HttpConnectionManager's `local_reply_config`."""
    already_json = {
        "filter": {"header_filter": {"header": {"name": EDGE_JSON_HEADER, "present_match": True}}},
        "body_format_override": {
            "text_format_source": {"inline_string": LOCAL_REPLY_BODY},
            "content_type": "application/json",
        },
    }
    # A gRPC call over the body or header limit: RESOURCE_EXHAUSTED, as the server itself answers it
    # (Envoy's own mapping of 413 and 431 would be UNKNOWN).
    grpc_too_large = [
        {
            "filter": {
                "and_filter": {
                    "filters": [
                        _status_filter("EQ", status),
                        {
                            "header_filter": {
                                "header": {"name": "content-type", "string_match": {"prefix": "application/grpc"}}
                            }
                        },
                    ]
                }
            },
            "headers_to_add": [
                {
                    "header": {"key": "grpc-status", "value": str(code_pb2.RESOURCE_EXHAUSTED)},
                    "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                }
            ],
        }
        for status in (413, 431)
    ]
    mappers = [already_json, *grpc_too_large]
    for error in (*EDGE_ERRORS, FALLBACK):
        status = _status_filter("EQ", error.status) if error.status else _status_filter("GE", 400)
        mappers.append(
            {"filter": {"and_filter": {"filters": [status, _NOT_GRPC]}}, "body_format_override": _body(error)}
        )
    return {"mappers": mappers}
