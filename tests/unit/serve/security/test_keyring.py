"""Signing keys: stable names, rotation with a grace period, a shared private file, frame keys."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import pytest

from serve.security.keyring import Keyring, SigningKey, frame_key, kid_of

SECRET = "s" * 40


def test_keyring_file_is_private(tmp_path):
    keyring = Keyring(SECRET, tmp_path / "keyring.json")
    keyring.rotate()
    assert (tmp_path / "keyring.json").stat().st_mode & 0o777 == 0o600


def test_kid_names_a_secret_stably_without_revealing_it() -> None:
    assert kid_of(SECRET) == kid_of(SECRET)
    assert kid_of(SECRET) != kid_of(SECRET + "x")
    assert SECRET not in kid_of(SECRET)
    assert kid_of(SECRET) == "k" + hashlib.sha256(SECRET.encode()).hexdigest()[:12]


def test_a_short_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 16"):
        Keyring("short")


def test_without_a_file_only_the_service_secret_signs_and_rotation_is_refused() -> None:
    keyring = Keyring(SECRET)

    assert keyring.current.secret == SECRET
    keys = keyring.keys()  # a method of Keyring, not a dict's view
    assert [k.kid for k in keys] == [kid_of(SECRET)]
    with pytest.raises(RuntimeError):
        keyring.rotate()


def test_rotation_retires_the_old_keys_which_verify_until_the_grace_ends(tmp_path: Path) -> None:
    keyring = Keyring(SECRET, tmp_path / "keyring.json", grace_s=100)

    first = keyring.rotate(now=1_000.0)
    second = keyring.rotate(now=2_000.0)

    assert keyring.current == second
    assert keyring.lookup(second.kid, now=1e12) == second  # the current key never expires
    assert keyring.lookup(first.kid, now=2_100.0) is not None  # retired at 2000, grace 100
    assert keyring.lookup(first.kid, now=2_100.5) is None
    assert keyring.lookup(kid_of(SECRET), now=1_100.0) is not None  # retired at 1000
    assert keyring.lookup(kid_of(SECRET), now=1_100.5) is None
    assert keyring.lookup("k-unknown") is None


def test_another_replica_reads_the_rotated_keys_from_the_file(tmp_path: Path) -> None:
    here = Keyring(SECRET, tmp_path / "keyring.json")
    new = here.rotate()

    there = Keyring(SECRET, tmp_path / "keyring.json")

    assert there.current == new
    theirs, ours = there.keys(), here.keys()
    assert [k.kid for k in theirs] == [k.kid for k in ours]
    assert there.base_secret == SECRET


def test_frame_keys_differ_per_token_and_per_key() -> None:
    one, two = SigningKey("a", "s" * 40, 0.0), SigningKey("b", "t" * 40, 0.0)
    expected = hmac.new(b"s" * 40, b"marketray/ws-frames/v1/j1", hashlib.sha256).hexdigest()

    assert frame_key(one, "j1") == expected.encode()
    assert frame_key(one, "j1") != frame_key(one, "j2")
    assert frame_key(one, "j1") != frame_key(two, "j1")
