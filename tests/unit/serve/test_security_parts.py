"""The pipeline's parts without Ray: addresses, GCRA, signing, revocation, masking, CLI."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time

import pytest

from core.settings import Settings
from market.cache import InMemoryCache
from market.cache.gcra import Quota, take
from serve.auth import TokenSigner
from serve.security.ipfilter import AddressPolicy, token_allows
from serve.security.revocation import RevocationList
from serve.security.sanitize import MASK, mask_url, masked_settings, neutralize
from serve.security.signing import BadSignature, FrameSigner, FrameVerifier, canonical

SECRET = "p" * 40


# -- addresses ----------------------------------------------------------------------------


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


# -- GCRA ---------------------------------------------------------------------------------


def test_gcra_allows_the_burst_then_refuses_with_the_wait_until_the_next_unit():
    # Arrange: 10 units per 60 s, one key
    quota, tat, now = Quota(10, 60.0), None, 1000.0
    allowed = 0
    for _ in range(10):
        decision, tats = take([tat], now, 1, [quota])
        tat = tats[0] if tats else tat
        allowed += decision.allowed
    # Act
    refused, unchanged = take([tat], now, 1, [quota])
    later, _ = take([tat], now + refused.retry_after_s, 1, [quota])
    # Assert: the 11th waits one emission interval (6 s), and then passes
    assert allowed == 10
    assert not refused.allowed
    assert unchanged is None
    assert refused.retry_after_s == pytest.approx(6.0)
    assert later.allowed


def test_gcra_charges_every_quota_or_none():
    small, large = Quota(2, 60.0), Quota(100, 60.0)
    decision, tats = take([None, None], 0.0, 3, [small, large])
    assert not decision.allowed
    assert tats is None  # the large quota was not charged either
    decision, tats = take([None, None], 0.0, 2, [small, large])
    assert decision.allowed
    assert decision.remaining == 0
    assert decision.limit == 2  # the binding quota is reported


def test_gcra_cost_scales_the_charge():
    decision, _ = take([None], 0.0, 5, [Quota(20, 60.0)])
    assert decision.remaining == 15


# -- signing ------------------------------------------------------------------------------


def _pair(window_s=5.0):
    key = b"k" * 64
    return FrameSigner(key), FrameVerifier(key, window_s=window_s)


def test_canonical_form_sorts_keys_without_whitespace():
    assert canonical({"b": 1, "a": [1.5, "é"]}) == '{"a":[1.5,"é"],"b":1}'.encode()


def test_good_signed_frame_is_accepted_and_unwrapped():
    client, server = _pair()
    frame = json.loads(client.sign({"action": "ping"}))
    assert server.check(frame) == {"action": "ping"}


@pytest.mark.parametrize(("change", "code"), [
    (lambda f: f.update(action="subscribe"), "signature_invalid"),
    (lambda f: f.update(sig="0" * 64), "signature_invalid"),
    (lambda f: f.pop("nonce"), "signature_missing"),
    (lambda f: f.update(extra=1), "signature_invalid"),
])
def test_any_changed_field_is_refused(change, code):
    client, server = _pair()
    frame = json.loads(client.sign({"action": "ping"}))
    change(frame)
    with pytest.raises(BadSignature) as info:
        server.check(frame)
    assert info.value.code == code


def test_stale_and_replayed_frames_are_refused():
    client, server = _pair()
    stale = json.loads(client.sign({"action": "ping"}, now_ms=int((time.time() - 6) * 1000)))
    with pytest.raises(BadSignature) as info:
        server.check(stale)
    assert info.value.code == "stale"
    frame = json.loads(client.sign({"action": "ping"}))
    server.check(dict(frame))
    with pytest.raises(BadSignature) as info:
        server.check(dict(frame))
    assert info.value.code == "replay"
    assert server.failures == 2


def test_server_frames_verify_and_reveal_gaps_and_tampering():
    client, server = _pair()
    first = server.seal('{"type":"pong"}')
    second = server.seal('{"type":"market","seq":3,"data":{"price":1.25}}')
    third = server.seal('{"type":"pong"}')
    assert client.open(first) == {"type": "pong"}
    tampered = second.replace("1.25", "1.26")
    with pytest.raises(BadSignature):
        client.open(tampered)
    with pytest.raises(BadSignature) as info:
        client.open(third)  # frame 2 never verified: a gap
    assert info.value.code == "sequence_gap"


def test_frame_key_depends_on_the_token():
    signer = TokenSigner(SECRET)
    one = signer.frame_key(signer.verify(signer.issue("viewer", signing=True)))
    two = signer.frame_key(signer.verify(signer.issue("viewer", signing=True)))
    assert one != two
    assert len(one) == 64


# -- revocation ---------------------------------------------------------------------------


def test_revoked_jti_and_subject_are_seen_by_another_replica():
    async def scenario():
        cache = InMemoryCache()  # stands for the shared Redis
        signer = TokenSigner(SECRET)
        here, there = RevocationList(cache), RevocationList(cache)
        one = signer.verify(signer.issue("viewer", "alice"))
        two = signer.verify(signer.issue("viewer", "bob"))
        await here.revoke("jti", one.jti)
        await here.revoke("subject", "bob")
        before = there.is_revoked(one)
        await there.refresh()
        return before, there.is_revoked(one), there.is_revoked(two), len(there)

    before, jti_revoked, subject_revoked, entries = asyncio.run(scenario())
    assert not before
    assert jti_revoked
    assert subject_revoked
    assert entries == 2


def test_subject_revocation_spares_tokens_issued_later():
    async def scenario():
        revocations = RevocationList(InMemoryCache())
        signer = TokenSigner(SECRET)
        old = signer.verify(signer.issue("viewer", "carol"))
        await revocations.revoke("subject", "carol")
        newer = dataclasses.replace(old, issued_at=time.time() + 2)
        return revocations.is_revoked(old), revocations.is_revoked(newer)

    assert asyncio.run(scenario()) == (True, False)


# -- masking and sanitising ---------------------------------------------------------------


def test_masked_settings_hide_every_secret():
    canary = "canary-7f3b9c1e5d2a4b6c8e0f1a3b5c7d9e1f"
    settings = Settings(secret_key=canary, alpaca_key_id=canary, alpaca_secret_key=canary,
                        redis_url=f"redis://user:{canary}@127.0.0.1:6379/0",
                        llm_url=f"https://{canary}@llm.example/v1")
    shown = json.dumps(masked_settings(settings))
    assert canary not in shown
    assert masked_settings(settings)["secret_key"] == MASK
    assert mask_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


def test_control_characters_are_neutralised():
    forged = "AAPL\n2026-01-01 INFO admin logged in\x1b[31m\u202e"
    assert "\n" not in neutralize(forged, keep_newlines=False)
    assert "\x1b" not in neutralize(forged)
    assert "\u202e" not in neutralize(forged)
    assert neutralize("two\nlines\ttab") == "two\nlines\ttab"


# -- CLI ----------------------------------------------------------------------------------


def test_cli_token_keys_rotate_and_signing_key(tmp_path, monkeypatch, capsys):
    from serve.cli import main
    from serve.security.keyring import Keyring

    monkeypatch.setenv("MARKETRAY_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("MARKETRAY_SECRET_KEY", SECRET)
    assert main(["token", "--role", "viewer", "--subject", "dana", "--signing",
                 "--allow-ip", "10.0.0.0/8"]) == 0
    issued = json.loads(capsys.readouterr().out)
    assert main(["keys", "rotate"]) == 0
    rotated = json.loads(capsys.readouterr().out)
    signer = TokenSigner(Keyring(SECRET, tmp_path / "keyring.json"))
    principal = signer.verify(issued["token"])
    assert principal.subject == "dana"
    assert principal.networks == ("10.0.0.0/8",)
    assert signer.frame_key(principal).decode() == issued["frame_key"]
    assert main(["token", "--role", "admin"]) == 0
    new_token = capsys.readouterr().out.strip()
    assert new_token.split(".")[0] != issued["token"].split(".")[0]  # another kid
    assert rotated["kid"] in json.dumps(__import__("jwt").get_unverified_header(new_token))


def test_cli_revoke_without_redis_or_server_fails_clearly(tmp_path, monkeypatch, capsys):
    from serve.cli import main

    monkeypatch.setenv("MARKETRAY_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("MARKETRAY_SECRET_KEY", SECRET)
    monkeypatch.delenv("MARKETRAY_REDIS_URL", raising=False)
    assert main(["token", "revoke", "--jti", "abc", "--url", "http://127.0.0.1:9"]) == 1
    assert "did not answer" in capsys.readouterr().err
