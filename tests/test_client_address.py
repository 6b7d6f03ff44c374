"""Whose x-forwarded-for counts when login failures are counted per address."""

from typing import Any

import pytest

from server.api_helpers import client_address, parse_networks

TRUSTED = parse_networks("127.0.0.1/32,::1/128,10.0.0.0/8")


class _Context:
    def __init__(self, peer: str, forwarded: str | None) -> None:
        self._peer = peer
        self._metadata = (("x-forwarded-for", forwarded),) if forwarded else ()

    def peer(self) -> str:
        return self._peer

    def invocation_metadata(self) -> Any:
        return self._metadata


@pytest.mark.parametrize(
    ("peer", "forwarded", "address"),
    [
        ("ipv4:127.0.0.1:5555", "198.51.100.7", "198.51.100.7"),  # Envoy on loopback
        ("ipv4:10.1.2.3:5555", "203.0.113.1, 198.51.100.7", "198.51.100.7"),  # the entry Envoy appended
        ("ipv6:[::1]:5555", "2001:db8::1", "2001:db8::1"),
        ("ipv4:203.0.113.9:5555", "198.51.100.7", "203.0.113.9"),  # a direct caller cannot pick its address
        ("ipv4:203.0.113.9:5555", None, "203.0.113.9"),
        ("unix:/tmp/socket", "198.51.100.7", "unknown"),
    ],
)
def test_forwarded_for_counts_only_from_trusted_proxies(peer: str, forwarded: str | None, address: str) -> None:
    assert client_address(_Context(peer, forwarded), trusted_proxies=TRUSTED) == address  # type: ignore[arg-type]
