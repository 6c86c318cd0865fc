import time

import jwt
import pytest

from market.errors import Unauthorized
from serve.auth import TokenSigner

SECRET = "s" * 40


def test_issued_token_verifies_with_subject_and_role():
    signer = TokenSigner(SECRET)
    principal = signer.verify(signer.issue("analyst", "alice"))
    assert (principal.subject, principal.role) == ("alice", "analyst")


def test_roles_are_ordered_viewer_analyst_admin():
    signer = TokenSigner(SECRET)
    viewer = signer.verify(signer.issue("viewer"))
    admin = signer.verify(signer.issue("admin"))
    assert viewer.allows("viewer")
    assert not viewer.allows("analyst")
    assert admin.allows("viewer")
    assert admin.allows("analyst")
    assert admin.allows("admin")


def test_token_signed_with_another_secret_is_rejected():
    token = TokenSigner("x" * 40).issue("admin")
    with pytest.raises(Unauthorized) as info:
        TokenSigner(SECRET).verify(token)
    assert info.value.code == "invalid_token"


def test_expired_token_is_rejected():
    claims = {"sub": "a", "role": "admin", "iat": 0, "exp": int(time.time()) - 5,
              "iss": "marketray"}
    token = jwt.encode(claims, SECRET, algorithm="HS256")
    with pytest.raises(Unauthorized) as info:
        TokenSigner(SECRET).verify(token)
    assert info.value.code == "token_expired"


def test_unknown_role_in_token_is_rejected():
    claims = {"sub": "a", "role": "root", "exp": int(time.time()) + 60, "iss": "marketray"}
    with pytest.raises(Unauthorized):
        TokenSigner(SECRET).verify(jwt.encode(claims, SECRET, algorithm="HS256"))


def test_unsigned_token_is_rejected():
    token = jwt.encode({"sub": "a", "role": "admin", "exp": int(time.time()) + 60,
                        "iss": "marketray"}, key=None, algorithm="none")
    with pytest.raises(Unauthorized):
        TokenSigner(SECRET).verify(token)


def test_a_remembered_token_still_expires(monkeypatch):
    signer = TokenSigner(SECRET)
    token = signer.issue("viewer", "bob", ttl_s=60)
    assert signer.verify(token).subject == "bob"  # verified and remembered
    later = time.time() + 120
    monkeypatch.setattr(time, "time", lambda: later)
    with pytest.raises(Unauthorized) as info:
        signer.verify(token)
    assert info.value.code == "token_expired"


def test_a_tampered_token_is_not_taken_from_the_remembered_ones():
    signer = TokenSigner(SECRET)
    token = signer.issue("viewer", "bob")
    signer.verify(token)
    header, payload, signature = token.split(".")
    forged_claims = jwt.decode(token, options={"verify_signature": False}) | {"role": "admin"}
    forged_payload = jwt.encode(forged_claims, "x" * 40, algorithm="HS256").split(".")[1]
    with pytest.raises(Unauthorized):
        signer.verify(f"{header}.{forged_payload}.{signature}")
