"""Client addresses behind proxies, allow and deny lists, and token-bound networks."""

from __future__ import annotations

import pytest

from serve.security.ipfilter import AddressPolicy, token_allows


def test_forwarded_for_from_an_untrusted_peer_is_ignored():
    policy = AddressPolicy(trusted_proxies=["10.0.0.0/8"])
    assert policy.client_address("203.0.113.9", "1.2.3.4") == "203.0.113.9"


def test_forwarded_for_from_a_trusted_proxy_gives_the_rightmost_untrusted_hop():
    policy = AddressPolicy(trusted_proxies=["10.0.0.0/8"])
    # the client wrote "6.6.6.6" itself; 198.51.100.7 is what the first proxy saw
    assert policy.client_address("10.0.0.2", "6.6.6.6, 198.51.100.7, 10.0.0.1") == "198.51.100.7"


@pytest.mark.parametrize(("client", "allowed"), [
    ("192.168.1.5", True), ("192.168.9.1", False), ("10.1.2.3", False), ("8.8.8.8", False),
    ("2001:db8::1", True), ("2001:db9::1", False), ("::ffff:192.168.1.5", True),
    ("::ffff:192.168.9.1", False),
])
def test_allow_and_deny_lists_ipv4_ipv6_and_mapped(client, allowed):
    policy = AddressPolicy(allow=["192.168.0.0/16", "2001:db8::/32"], deny=["192.168.9.0/24"])
    assert policy.allows(policy.client_address(client, None)) is allowed


def test_deny_list_alone_admits_everyone_else():
    policy = AddressPolicy(deny=["::ffff:203.0.113.0/120"])  # a mapped network is IPv4's
    assert not policy.allows("203.0.113.4")
    assert policy.allows("198.51.100.1")


def test_token_networks_bind_a_token_to_addresses():
    assert token_allows((), "1.2.3.4")
    assert token_allows(("10.0.0.0/8",), "10.9.9.9")
    assert not token_allows(("10.0.0.0/8",), "11.0.0.1")
