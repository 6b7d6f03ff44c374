"""Meta Graph API client: `IMetaClient` (protocol.py), implemented by `MetaGraphClient` (client.py)."""

from server.clients.meta.client import GRAPH_BASE_URL, MetaGraphClient
from server.clients.meta.exceptions import (
    MetaApiError,
    MetaError,
    MetaPermissionError,
    MetaRateLimitError,
    MetaTokenError,
    MetaTransientError,
    MetaUnsupportedTimezoneError,
)
from server.clients.meta.models import (
    MetaAccountTask,
    MetaAdAccount,
    MetaAdAccountReads,
    MetaBusiness,
    MetaPixel,
)
from server.clients.meta.protocol import IMetaClient
from server.clients.meta.usage import UsageThrottle
from server.config import GRAPH_API_VERSION

__all__ = [
    "GRAPH_API_VERSION",
    "GRAPH_BASE_URL",
    "IMetaClient",
    "MetaAccountTask",
    "MetaAdAccount",
    "MetaAdAccountReads",
    "MetaApiError",
    "MetaBusiness",
    "MetaError",
    "MetaGraphClient",
    "MetaPermissionError",
    "MetaPixel",
    "MetaRateLimitError",
    "MetaTokenError",
    "MetaTransientError",
    "MetaUnsupportedTimezoneError",
    "UsageThrottle",
]
