"""Signed WebSocket frames: the canonical form, tampering, staleness, replay, sequence gaps."""

from __future__ import annotations

import json
import time

import pytest

from serve.security.signing import BadSignature, FrameSigner, FrameVerifier, canonical


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


