"""Google ID tokens for `google_id_token` keychain entries (spec 10), minted from a service account key.

The flow is Google's for service accounts: a JWT signed with the key (RS256) whose claims carry the
`target_audience`, exchanged at the token endpoint (`grant_type=urn:ietf:params:oauth:grant-type:
jwt-bearer`) for `{"id_token": ...}`. The endpoint is the key's `token_uri` (Google's by default), or
the deployment's override (NOETL_GOOGLE_TOKEN_URL, read at the entry points). No other Google library
is needed, and none is called: a worker that cannot reach the endpoint fails the entry with a clear
`connection` error naming it.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ASSERTION_LIFETIME_S = 3600


class IdTokenError(Exception):
    """Minting failed; `kind` is an error kind of spec section 9. The message never holds the key."""

    def __init__(self, message: str, kind: str, retryable: bool = False) -> None:
        super().__init__(message)
        self.kind = kind
        self.retryable = retryable


@dataclass(frozen=True)
class ServiceAccountKey:
    client_email: str
    private_key: str = field(repr=False)
    private_key_id: str | None = None
    token_uri: str = GOOGLE_TOKEN_URL


def service_account_key(value: Any) -> ServiceAccountKey:
    """A service account key from its JSON (text or mapping), or from a credential holding it whole or
    under `service_account` / `service_account_json` / `json` / `key`."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise IdTokenError("the service account key is not JSON (expected the key file Google "
                               "issues, with client_email and private_key)", "validation") from None
    if not isinstance(value, Mapping):
        raise IdTokenError("the service account key must be a JSON object with client_email and "
                           "private_key", "validation")
    if "private_key" not in value:
        for nested in ("service_account", "service_account_json", "json", "key"):
            if nested in value:
                return service_account_key(value[nested])
    email, pem = value.get("client_email"), value.get("private_key")
    if not isinstance(email, str) or not email or not isinstance(pem, str) or not pem:
        raise IdTokenError("the service account key needs 'client_email' and 'private_key' (a "
                           "service account key file; user credentials cannot mint ID tokens)", "validation")
    token_uri = value.get("token_uri")
    key_id = value.get("private_key_id")
    return ServiceAccountKey(email, pem, key_id if isinstance(key_id, str) else None,
                             token_uri if isinstance(token_uri, str) and token_uri else GOOGLE_TOKEN_URL)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def signed_assertion(key: ServiceAccountKey, audience: str, token_url: str, now: float) -> str:
    """The RS256-signed JWT asking `token_url` for an ID token for `audience`."""
    try:
        private = serialization.load_pem_private_key(key.private_key.encode(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise IdTokenError("the service account's private_key is not a readable PEM RSA key",
                           "validation") from None
    if not isinstance(private, rsa.RSAPrivateKey):
        raise IdTokenError("the service account's private_key is not an RSA key (RS256 needs one)",
                           "validation")
    header: dict[str, Any] = {"alg": "RS256", "typ": "JWT"}
    if key.private_key_id:
        header["kid"] = key.private_key_id
    issued = int(now)
    claims = {"iss": key.client_email, "sub": key.client_email, "aud": token_url, "iat": issued,
              "exp": issued + ASSERTION_LIFETIME_S, "target_audience": audience}
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = private.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64(signature)}"


def token_expiry(id_token: str) -> float | None:
    """The `exp` claim (epoch seconds) of a JWT, read without verifying it (only to know when to renew)."""
    try:
        payload = id_token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    return float(exp) if isinstance(exp, (int, float)) else None


async def mint_id_token(key: ServiceAccountKey, audience: str, *, token_url: str | None = None,
                        http: httpx.AsyncClient | None = None, timeout_s: float = 10.0) -> dict[str, Any]:
    """`{id_token, token, expires_at}` for `audience`: `token` is the same ID token (for headers such as
    `Bearer {{ keychain.name.token }}`), `expires_at` its expiry in epoch seconds (or null)."""
    url = token_url or key.token_uri
    assertion = signed_assertion(key, audience, url, time.time())
    client = http or httpx.AsyncClient(timeout=timeout_s)
    try:
        response = await client.post(url, data={"grant_type": JWT_BEARER, "assertion": assertion})
    except httpx.TimeoutException:
        raise IdTokenError(f"the token endpoint {url} did not answer within {timeout_s:g} s", "timeout",
                           retryable=True) from None
    except httpx.HTTPError as exc:
        raise IdTokenError(f"the token endpoint {url} could not be reached ({type(exc).__name__}): Google "
                           "must be reachable from this worker", "connection", retryable=True) from None
    finally:
        if http is None:
            await client.aclose()
    if response.status_code >= 400:
        raise IdTokenError(f"the token endpoint {url} refused the service account "
                           f"{key.client_email}: {response.status_code} {_reason(response)}",
                           "auth", retryable=response.status_code >= 500)
    try:
        body = response.json()
    except ValueError:
        raise IdTokenError(f"the token endpoint {url} did not answer JSON", "auth") from None
    token = body.get("id_token") if isinstance(body, dict) else None
    if not isinstance(token, str) or not token:
        raise IdTokenError(f"the token endpoint {url} answered without an id_token", "auth")
    return {"id_token": token, "token": token, "expires_at": token_expiry(token)}


def _reason(response: httpx.Response) -> str:
    """Google's error code and description (never secrets), else the status phrase."""
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase
    if isinstance(body, dict):
        parts = [str(body[k]) for k in ("error", "error_description") if isinstance(body.get(k), str)]
        if parts:
            return ": ".join(parts)[:300]
    return response.reason_phrase
