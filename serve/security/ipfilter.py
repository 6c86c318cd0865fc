"""Client addresses and the address filter (CONTRACT §4: IP allow/deny, trusted proxies).

``X-Forwarded-For`` counts only when the peer is a trusted proxy; then the client is the
rightmost address in it that is not itself a trusted proxy (what each proxy appended is
trusted, what the client wrote before it is not). IPv4-mapped IPv6 addresses
(``::ffff:10.0.0.1``) are treated as the IPv4 address they carry.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from functools import lru_cache

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=4096)
def parse_address(text: str) -> IPAddress | None:
    """The address in ``text`` (IPv4-mapped IPv6 unwrapped), or None if it is not one."""
    candidate = text.strip()
    if candidate.startswith("[") and "]" in candidate:  # [v6]:port
        candidate = candidate[1:candidate.index("]")]
    try:
        address = ipaddress.ip_address(candidate)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def parse_networks(items: Iterable[str]) -> tuple[IPNetwork, ...]:
    """CIDRs as networks; IPv4-mapped IPv6 networks become IPv4 ones. Raises ValueError."""
    networks: list[IPNetwork] = []
    for item in items:
        network = ipaddress.ip_network(item.strip(), strict=False)
        if isinstance(network, ipaddress.IPv6Network) and network.prefixlen >= 96:
            mapped = network.network_address.ipv4_mapped
            if mapped is not None:
                network = ipaddress.IPv4Network(f"{mapped}/{network.prefixlen - 96}")
        networks.append(network)
    return tuple(networks)


def in_any(address: IPAddress | None, networks: Sequence[IPNetwork]) -> bool:
    """Whether ``address`` lies in one of ``networks`` (False for no address)."""
    return address is not None and any(address in network for network in networks)


class AddressPolicy:
    """Resolve the client address of a connection and decide whether it may connect."""

    def __init__(self, allow: Iterable[str] = (), deny: Iterable[str] = (),
                 trusted_proxies: Iterable[str] = ()) -> None:
        self.allow = parse_networks(allow)
        self.deny = parse_networks(deny)
        self.trusted = parse_networks(trusted_proxies)
        self._decisions: dict[str, bool] = {}
        self._trusted_peers: dict[str, bool] = {}

    def is_trusted_proxy(self, peer: str) -> bool:
        """Whether ``peer`` is one of the trusted proxies."""
        if not self.trusted:
            return False
        known = self._trusted_peers.get(peer)
        if known is None:
            known = in_any(parse_address(peer), self.trusted)
            if len(self._trusted_peers) > 65_536:
                self._trusted_peers.clear()
            self._trusted_peers[peer] = known
        return known

    def client_address(self, peer: str, forwarded_for: str | None) -> str:
        """The client's address: ``peer``, or from ``X-Forwarded-For`` behind a trusted proxy."""
        if not forwarded_for or not self.is_trusted_proxy(peer):
            address = parse_address(peer)
            return str(address) if address is not None else peer
        hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
        for hop in reversed(hops):
            address = parse_address(hop)
            if address is None:  # a garbled entry: trust nothing further left
                break
            if not in_any(address, self.trusted):
                return str(address)
        address = parse_address(peer)
        return str(address) if address is not None else peer

    def allows(self, client: str) -> bool:
        """Whether ``client`` may connect (deny wins; an allow list admits only its networks)."""
        known = self._decisions.get(client)
        if known is not None:
            return known
        address = parse_address(client)
        if address is None:  # not an IP (a test client's name): only an empty allow list admits
            decision = not self.allow
        else:
            decision = not in_any(address, self.deny) and (
                not self.allow or in_any(address, self.allow))
        if len(self._decisions) > 65_536:
            self._decisions.clear()
        self._decisions[client] = decision
        return decision


def token_allows(networks: Sequence[str], client: str) -> bool:
    """Whether a token bound to ``networks`` (empty: anywhere) may be used from ``client``."""
    if not networks:
        return True
    return in_any(parse_address(client), _networks(tuple(networks)))


@lru_cache(maxsize=1024)
def _networks(items: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    try:
        return parse_networks(items)
    except ValueError:
        return ()
