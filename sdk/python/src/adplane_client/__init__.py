"""The adplane client layer over the generated `adplane` stubs."""

from adplane_client.channels import SERVICE_CONFIG, channel_credentials, connect, connect_async
from adplane_client.credentials import ApiKeyCredentials, Credentials, TokenCredentials
from adplane_client.errors import AdplaneError, FieldViolation
from adplane_client.pagination import apages, pages
from adplane_client.watch import RESUME_TOKEN_EXPIRED, Reload, awatch, backoff_delay, is_resumable, watch

__all__ = [
    "RESUME_TOKEN_EXPIRED",
    "SERVICE_CONFIG",
    "AdplaneError",
    "ApiKeyCredentials",
    "Credentials",
    "FieldViolation",
    "Reload",
    "TokenCredentials",
    "apages",
    "awatch",
    "backoff_delay",
    "channel_credentials",
    "connect",
    "connect_async",
    "is_resumable",
    "pages",
    "watch",
]
