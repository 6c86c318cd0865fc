"""Token signing keys: the service secret plus rotated keys, each named by a ``kid``.

The service secret (``MARKETRAY_SECRET_KEY`` or ``<data_dir>/secret.key``) is always the
first key. ``marketray keys rotate`` adds a random key to ``<data_dir>/keyring.json``
(mode 0600) and retires every older one: new tokens are signed with the newest key, and
a token signed by a retired key verifies for ``grace_s`` after its key's retirement, then
no longer. Replicas re-read the file when it changes (checked at most once a second), so
a rotation needs no restart; several nodes need the data dir shared (as for the index).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

KEYRING_FILE = "keyring.json"
_RELOAD_EVERY_S = 1.0


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One HMAC key; ``retired_at`` (Unix seconds) once a newer key replaced it."""

    kid: str
    secret: str
    created_at: float
    retired_at: float | None = None


def kid_of(secret: str) -> str:
    """A stable public name for ``secret`` (a hash prefix; reveals nothing usable)."""
    return "k" + hashlib.sha256(secret.encode()).hexdigest()[:12]


class Keyring:
    """The service's signing keys, newest last; reloads its file when it changes."""

    def __init__(self, base_secret: str, path: Path | None = None, *,
                 grace_s: float = 7 * 24 * 3600.0) -> None:
        if len(base_secret) < 16:
            raise ValueError("token secret must be at least 16 characters")
        self.path = path
        self.grace_s = grace_s
        self._base = SigningKey(kid_of(base_secret), base_secret, 0.0)
        self._keys: dict[str, SigningKey] = {self._base.kid: self._base}
        self._current = self._base
        self._stamp: tuple[int, int] | None = None
        self._next_check = 0.0
        self.reload()

    @property
    def current(self) -> SigningKey:
        """The key new tokens are signed with."""
        self.maybe_reload()
        return self._current

    @property
    def base_secret(self) -> str:
        """The service secret (key derivations that must outlive rotations use it)."""
        return self._base.secret

    def keys(self) -> list[SigningKey]:
        """Every key, oldest first."""
        self.maybe_reload()
        return sorted(self._keys.values(), key=lambda k: k.created_at)

    def lookup(self, kid: str, now: float | None = None) -> SigningKey | None:
        """The key named ``kid`` if it may still verify tokens at ``now``, else None."""
        self.maybe_reload()
        key = self._keys.get(kid)
        if key is None:
            return None
        if key.retired_at is not None and (now or time.time()) > key.retired_at + self.grace_s:
            return None
        return key

    def maybe_reload(self) -> None:
        """Re-read the keyring file when it changed (at most once a second)."""
        if self.path is None:
            return
        now = time.monotonic()
        if now < self._next_check:
            return
        self._next_check = now + _RELOAD_EVERY_S
        self.reload()

    def reload(self) -> None:
        """Read the keyring file now (absent: only the service secret)."""
        if self.path is None:
            return
        try:
            info = self.path.stat()
        except FileNotFoundError:
            return
        stamp = (info.st_mtime_ns, info.st_size)
        if stamp == self._stamp:
            return
        data = json.loads(self.path.read_text())
        retired = {str(k): float(v) for k, v in data.get("retired", {}).items()}
        keys = {self._base.kid: SigningKey(self._base.kid, self._base.secret, 0.0,
                                           retired.get(self._base.kid))}
        for item in data.get("keys", []):
            kid = str(item["kid"])
            keys[kid] = SigningKey(kid, str(item["secret"]), float(item["created_at"]),
                                   retired.get(kid))
        self._keys = keys
        active = [k for k in keys.values() if k.retired_at is None]
        self._current = max(active or keys.values(), key=lambda k: k.created_at)
        self._stamp = stamp

    def rotate(self, now: float | None = None) -> SigningKey:
        """Add a new random key, retire the others, write the file; return the new key."""
        if self.path is None:
            raise RuntimeError("this keyring has no file to rotate into")
        self.reload()
        now = time.time() if now is None else now
        new = SigningKey("k" + secrets.token_hex(6), secrets.token_urlsafe(48), now)
        retired = {k.kid: k.retired_at or now for k in self._keys.values()}
        stored = [{"kid": k.kid, "secret": k.secret, "created_at": k.created_at}
                  for k in self._keys.values() if k.kid != self._base.kid]
        stored.append({"kid": new.kid, "secret": new.secret, "created_at": new.created_at})
        payload = json.dumps({"keys": stored, "retired": retired}, indent=1)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(payload)
        temporary.replace(self.path)
        self._stamp = None
        self.reload()
        return new


def frame_key(key: SigningKey, jti: str) -> bytes:
    """The key a ``--signing`` token's WebSocket frames are signed with (hex-encoded).

    Derived from the token's signing key and its ``jti``, so the server stores nothing
    per token and the key dies with the token's own key.
    """
    digest = hmac.new(key.secret.encode(), f"marketray/ws-frames/v1/{jti}".encode(),
                      hashlib.sha256).hexdigest()
    return digest.encode()
