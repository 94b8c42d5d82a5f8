"""Passwords (argon2), access tokens (JWT, HS256), refresh tokens (random, stored hashed), media signatures."""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import time
from dataclasses import dataclass
from typing import Literal

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()
# A real hash to verify against when the email is unknown, so timing does not reveal accounts.
_DUMMY_HASH = _hasher.hash("not-a-real-password")

Role = Literal["owner", "editor", "viewer"]


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True)
class Principal:
    user_id: int
    account_id: int
    role: Role


class TokenError(Exception):
    def __init__(self, kind: Literal["missing", "invalid", "expired"]) -> None:
        super().__init__(kind)
        self.kind = kind


def issue_access_token(principal: Principal, secret: str, ttl_s: int) -> str:
    now = int(time.time())
    claims = {
        "sub": str(principal.user_id),
        "acc": principal.account_id,
        "role": principal.role,
        "typ": "access",
        "iat": now,
        "exp": now + ttl_s,
    }
    return jwt.encode(claims, secret, algorithm="HS256")


def read_access_token(token: str, secret: str) -> tuple[Principal, float]:
    """The principal and the token's expiry (epoch seconds); raises TokenError."""
    try:
        claims = jwt.decode(token, secret, algorithms=["HS256"], options={"require": ["exp", "sub"]})
    except jwt.ExpiredSignatureError:
        raise TokenError("expired") from None
    except jwt.PyJWTError:
        raise TokenError("invalid") from None
    role = claims.get("role")
    if claims.get("typ") != "access" or role not in ("owner", "editor", "viewer"):
        raise TokenError("invalid")
    try:
        principal = Principal(user_id=int(claims["sub"]), account_id=int(claims["acc"]), role=role)
        return principal, float(claims["exp"])
    except (KeyError, TypeError, ValueError):
        raise TokenError("invalid") from None


def new_refresh_token() -> str:
    return secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_site_key() -> str:
    return "site_" + secrets.token_hex(12)


def new_webhook_secret() -> str:
    return secrets.token_urlsafe(32)


# --- media URLs ---------------------------------------------------------------------------------


def media_expiry(now: float, ttl_s: int) -> int:
    """Expiry rounded up to a window so the same URL is handed out for a while (ETags stay stable)."""
    window = max(1, ttl_s // 2)
    return int(math.ceil(now / window) * window + window)


def media_signature(secret: str, account_id: int, blob_key: str, exp: int) -> str:
    message = f"media:{account_id}:{blob_key}:{exp}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()[:32]


def media_signature_valid(
    secret: str, account_id: int, blob_key: str, exp: int, sig: str, now: float
) -> bool:
    if exp < now:
        return False
    return hmac.compare_digest(media_signature(secret, account_id, blob_key, exp), sig)
