"""``marketray token`` (issue, ``revoke``) and ``marketray keys rotate``.

Tokens are signed with the newest key of ``<data_dir>/keyring.json`` (or the service
secret before any rotation): run these with the server's ``MARKETRAY_SECRET_KEY`` and
``MARKETRAY_DATA_DIR``. A revocation goes to Redis when ``MARKETRAY_REDIS_URL`` is set
(every replica picks it up within ``revocation_refresh_s``), else to the running local
server's ``POST /admin/revocations`` (its in-process list).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from core.settings import Settings
from serve.observability import audit_event


def _settings() -> Settings:
    from serve.cli_settings import load_settings  # noqa: PLC0415 - keep `marketray --help` fast

    return load_settings()


def _signer(settings: Settings) -> Any:
    from serve.auth import TokenSigner  # noqa: PLC0415 - keep `marketray --help` fast
    from serve.security.keyring import KEYRING_FILE, Keyring  # noqa: PLC0415

    secret, _ = settings.resolved_secret()
    keyring = Keyring(secret, settings.data_dir / KEYRING_FILE, grace_s=settings.key_grace_s)
    return TokenSigner(keyring, audience=settings.token_audience)


def cmd_token(args: argparse.Namespace) -> int:
    """Print a signed bearer token (and, with ``--signing``, its frame key)."""
    if args.role is None:
        print("marketray token: --role is required (or use `marketray token revoke`)",
              file=sys.stderr)
        return 2
    from serve.security.ipfilter import parse_networks  # noqa: PLC0415

    try:
        networks = [str(n) for n in parse_networks(args.allow_ip)]
    except ValueError as exc:
        print(f"marketray token: --allow-ip: {exc}", file=sys.stderr)
        return 2
    settings = _settings()
    signer = _signer(settings)
    token, claims = signer.issue_with_claims(args.role, args.subject, args.ttl,
                                             allow_ip=networks, signing=args.signing)
    audit_event(settings, "token.issued", subject=args.subject, role=args.role,
                jti=claims["jti"], expires_at=claims["exp"], allow_ip=networks,
                signing=args.signing, by="cli")
    if not args.signing and not args.verbose:
        print(token)
        return 0
    info: dict[str, Any] = {"token": token, "jti": claims["jti"], "expires_at": claims["exp"]}
    if args.signing:
        info["frame_key"] = signer.frame_key(signer.verify(token)).decode()
    print(json.dumps(info, indent=2))
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    """Revoke a token by ``jti`` or every token of a subject issued so far."""
    settings = _settings()
    kind, value = ("jti", args.jti) if args.jti else ("subject", args.subject)
    if settings.redis_url:
        entry = asyncio.run(_revoke_in_cache(settings, kind, value))
    else:
        entry = _revoke_on_server(settings, kind, value, args.url)
        if entry is None:
            return 1
    audit_event(settings, "token.revoked", kind=kind, value=value, by="cli")
    print(json.dumps(entry))
    return 0


async def _revoke_in_cache(settings: Settings, kind: str, value: str) -> dict[str, object]:
    from market.cache import make_cache  # noqa: PLC0415
    from serve.security.revocation import RevocationList  # noqa: PLC0415

    cache = make_cache(settings.redis_url)
    try:
        return await RevocationList(cache).revoke(kind, value)  # type: ignore[arg-type]
    finally:
        await cache.close()


def _revoke_on_server(settings: Settings, kind: str, value: str,
                      url: str | None) -> dict[str, object] | None:
    import httpx  # noqa: PLC0415

    base = url or f"http://127.0.0.1:{settings.port}"
    token = _signer(settings).issue("admin", "marketray-cli", ttl_s=60)
    try:
        response = httpx.post(f"{base}/admin/revocations", json={kind: value}, timeout=10,
                              headers={"Authorization": f"Bearer {token}"})
    except httpx.HTTPError as exc:
        print(f"marketray token revoke: no Redis configured and the server at {base} did "
              f"not answer ({type(exc).__name__}); set MARKETRAY_REDIS_URL or --url",
              file=sys.stderr)
        return None
    if response.status_code != 201:
        print(f"marketray token revoke: {response.status_code} {response.text[:300]}",
              file=sys.stderr)
        return None
    entry: dict[str, object] = response.json()
    return entry


def cmd_keys_rotate(args: argparse.Namespace) -> int:
    """Add a signing key; tokens of the older keys verify for the grace period."""
    settings = _settings()
    keyring = _signer(settings).keyring
    key = keyring.rotate()
    audit_event(settings, "keys.rotated", kid=key.kid, by="cli")
    print(json.dumps({"kid": key.kid, "keyring": str(keyring.path),
                      "previous_keys_valid_until": key.created_at + settings.key_grace_s}))
    return 0


def register(sub: Any) -> None:
    """Add ``token`` (with ``revoke``) and ``keys`` to the ``marketray`` parser."""
    token = sub.add_parser("token", help="print a signed bearer token; `token revoke` revokes")
    token.add_argument("--role", choices=["viewer", "analyst", "admin"], default=None)
    token.add_argument("--subject", default="user")
    token.add_argument("--ttl", type=float, default=30 * 24 * 3600, help="seconds")
    token.add_argument("--allow-ip", action="append", default=[], metavar="CIDR",
                       help="networks the token may be used from (repeatable)")
    token.add_argument("--signing", action="store_true",
                       help="require signed WebSocket frames; prints the frame key as JSON")
    token.add_argument("--verbose", action="store_true", help="print JSON with jti and expiry")
    token.set_defaults(func=cmd_token)
    actions = token.add_subparsers(dest="token_action")
    revoke = actions.add_parser("revoke", help="revoke by jti or subject until expiry")
    target = revoke.add_mutually_exclusive_group(required=True)
    target.add_argument("--jti")
    target.add_argument("--subject")
    revoke.add_argument("--url", default=None,
                        help="server base URL when no Redis is configured (default: local)")
    revoke.set_defaults(func=cmd_revoke)

    keys = sub.add_parser("keys", help="manage token signing keys")
    key_actions = keys.add_subparsers(dest="keys_action", required=True)
    rotate = key_actions.add_parser("rotate", help="add a new signing key, retire the others")
    rotate.set_defaults(func=cmd_keys_rotate)
