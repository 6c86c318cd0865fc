import time

import jwt
import pytest

from core.errors import Unauthorized
from serve.auth import TokenSigner
from serve.security.keyring import Keyring, kid_of

SECRET = "s" * 40


def _claims(**overrides):
    now = int(time.time())
    return {"sub": "a", "role": "admin", "iat": now, "exp": now + 60, "iss": "marketray",
            "aud": "marketray-api", "jti": "j1", **overrides}


def _forge(claims, secret=SECRET, kid=None, algorithm="HS256"):
    return jwt.encode(claims, secret, algorithm=algorithm,
                      headers={"kid": kid or kid_of(SECRET)})


def test_issued_token_verifies_with_subject_role_and_claims():
    signer = TokenSigner(SECRET)
    token, claims = signer.issue_with_claims("analyst", "alice", allow_ip=["10.0.0.0/8"],
                                             signing=True)
    principal = signer.verify(token)
    assert (principal.subject, principal.role) == ("alice", "analyst")
    assert principal.jti == claims["jti"]
    assert len(principal.jti) == 32
    assert principal.networks == ("10.0.0.0/8",)
    assert principal.signing is True
    assert jwt.get_unverified_header(token)["kid"] == kid_of(SECRET)


def test_roles_are_ordered_viewer_analyst_admin():
    signer = TokenSigner(SECRET)
    viewer = signer.verify(signer.issue("viewer"))
    admin = signer.verify(signer.issue("admin"))
    assert viewer.allows("viewer")
    assert not viewer.allows("analyst")
    assert admin.allows("viewer")
    assert admin.allows("analyst")
    assert admin.allows("admin")


def test_each_token_gets_its_own_jti():
    signer = TokenSigner(SECRET)
    assert signer.verify(signer.issue("viewer")).jti != signer.verify(signer.issue("viewer")).jti


def test_token_signed_with_another_secret_is_rejected():
    token = TokenSigner("x" * 40).issue("admin")
    with pytest.raises(Unauthorized) as info:
        TokenSigner(SECRET).verify(token)
    assert info.value.code == "token_invalid"


def test_expired_token_is_rejected():
    with pytest.raises(Unauthorized) as info:
        TokenSigner(SECRET).verify(_forge(_claims(iat=0, exp=int(time.time()) - 5)))
    assert info.value.code == "token_expired"


@pytest.mark.parametrize("missing", ["sub", "role", "iat", "exp", "iss", "aud", "jti"])
def test_token_without_a_required_claim_is_rejected(missing):
    claims = _claims()
    del claims[missing]
    with pytest.raises(Unauthorized):
        TokenSigner(SECRET).verify(_forge(claims))


@pytest.mark.parametrize(("claim", "value"), [("iss", "someone"), ("aud", "other-api"),
                                              ("role", "root")])
def test_token_with_a_wrong_claim_is_rejected(claim, value):
    with pytest.raises(Unauthorized):
        TokenSigner(SECRET).verify(_forge(_claims(**{claim: value})))


def test_token_with_unknown_kid_is_rejected():
    with pytest.raises(Unauthorized):
        TokenSigner(SECRET).verify(_forge(_claims(), kid="k-unknown"))


def test_algorithm_is_pinned():
    unsigned = jwt.encode(_claims(), key=None, algorithm="none", headers={"kid": kid_of(SECRET)})
    hs512 = _forge(_claims(), algorithm="HS512")
    for token in (unsigned, hs512):
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


def test_rotation_signs_with_new_key_and_old_tokens_verify_through_grace(tmp_path, monkeypatch):
    # Arrange: a token signed by the service secret, then a rotation
    keyring = Keyring(SECRET, tmp_path / "keyring.json", grace_s=100)
    signer = TokenSigner(keyring)
    old_token = signer.issue("viewer", "old", ttl_s=10_000)
    new_key = keyring.rotate()

    # Act: a fresh signer reading the same file (another replica)
    other = TokenSigner(Keyring(SECRET, tmp_path / "keyring.json", grace_s=100))
    new_token = other.issue("viewer", "new")

    # Assert: new tokens carry the new kid; the old one verifies inside the grace period
    assert jwt.get_unverified_header(new_token)["kid"] == new_key.kid
    assert other.verify(old_token).subject == "old"
    assert other.verify(new_token).subject == "new"
    later = time.time() + 101
    monkeypatch.setattr(time, "time", lambda: later)
    with pytest.raises(Unauthorized):
        other.verify(old_token)  # remembered, but its key's grace is over
    with pytest.raises(Unauthorized):
        TokenSigner(Keyring(SECRET, tmp_path / "keyring.json", grace_s=100)).verify(old_token)
    assert other.verify(new_token).subject == "new"


def test_frame_key_depends_on_the_token():
    signer = TokenSigner(SECRET)
    one = signer.frame_key(signer.verify(signer.issue("viewer", signing=True)))
    two = signer.frame_key(signer.verify(signer.issue("viewer", signing=True)))
    assert one != two
    assert len(one) == 64
