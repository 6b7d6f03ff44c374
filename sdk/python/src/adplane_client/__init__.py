"""The adplane client layer over the generated `adplane` stubs."""

from adplane_client.channels import SERVICE_CONFIG, channel_credentials, connect, connect_async
from adplane_client.credentials import ApiKeyCredentials, Credentials, TokenCredentials
from adplane_client.errors import AdplaneError, FieldViolation
from adplane_client.pagination import apages, pages

__all__ = [
    "SERVICE_CONFIG",
    "AdplaneError",
    "ApiKeyCredentials",
    "Credentials",
    "FieldViolation",
    "TokenCredentials",
    "apages",
    "channel_credentials",
    "connect",
    "connect_async",
    "pages",
]
