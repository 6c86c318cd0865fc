"""The security commands of the CLI: tokens, key rotation, revocation without a server."""

from __future__ import annotations

import json

from serve.auth import TokenSigner

SECRET = "p" * 40


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
