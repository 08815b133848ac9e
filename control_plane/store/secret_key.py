"""The credential encryption key (AES-256-GCM): from NOETL_SECRET_KEY or a 0600 key file; seal/open.

`NOETL_SECRET_KEY` holds 32 random bytes written as 64 hexadecimal characters (preferred; e.g.
`openssl rand -hex 32`) or as base64 (standard or URL-safe alphabet, padding optional). Without it,
the key lives in `<data dir>/secret.key` (64 hex characters), created with mode 0600 on first use; a
key file that group or others can access is refused.
"""

from __future__ import annotations

import binascii
import hashlib
import logging
import os
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from control_plane.errors import SecretKeyError

log = logging.getLogger(__name__)

ENV_VAR = "NOETL_SECRET_KEY"
KEY_FILE_NAME = "secret.key"
KEY_BYTES = 32
NONCE_BYTES = 12
_GENERATE = "generate one with `openssl rand -hex 32`"


@dataclass(frozen=True, slots=True)
class SecretKey:
    """A 256-bit key; `key_id` names it (a hash prefix) without revealing it. The repr hides the key."""

    material: bytes = field(repr=False)
    source: str  # where it came from: the env var's name or the key file's path

    def __post_init__(self) -> None:
        if len(self.material) != KEY_BYTES:
            raise SecretKeyError(f"the secret key has {len(self.material)} bytes; AES-256 needs {KEY_BYTES}",
                                 where=self.source, fix=_GENERATE)

    @property
    def key_id(self) -> str:
        return hashlib.sha256(b"noetl-secret-key-id\0" + self.material).hexdigest()[:16]

    @classmethod
    def generate(cls, source: str = "generated") -> SecretKey:
        return cls(secrets.token_bytes(KEY_BYTES), source)

    @classmethod
    def parse(cls, text: str, source: str) -> SecretKey:
        """64 hex characters, or base64 of 32 bytes."""
        value = text.strip()
        if len(value) == 2 * KEY_BYTES:
            try:
                return cls(bytes.fromhex(value), source)
            except ValueError:
                pass
        try:
            raw = binascii.a2b_base64(value.replace("-", "+").replace("_", "/") + "=" * (-len(value) % 4),
                                      strict_mode=True)
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) != KEY_BYTES:
            raise SecretKeyError(f"the secret key is not {KEY_BYTES} bytes written as 64 hex characters or "
                                 f"as base64 (got {len(value)} characters)", where=source, fix=_GENERATE)
        return cls(raw, source)

    def seal(self, name: str, plaintext: bytes) -> tuple[bytes, bytes]:
        """Encrypt with a fresh random 96-bit nonce and `name` as associated data -> (nonce, ciphertext)."""
        # cryptography only when a credential is sealed or opened: a command that only submits and
        # follows an execution loads the key without it
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        nonce = secrets.token_bytes(NONCE_BYTES)
        return nonce, AESGCM(self.material).encrypt(nonce, plaintext, name.encode())

    def open(self, name: str, nonce: bytes, ciphertext: bytes, *, stored_key_id: str | None = None) -> bytes:
        """Decrypt; a wrong key or tampered data raises SecretKeyError (without any value in it)."""
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        try:
            return AESGCM(self.material).decrypt(nonce, ciphertext, name.encode())
        except InvalidTag as exc:
            if stored_key_id is not None and stored_key_id != self.key_id:
                reason = (f"it was encrypted with another key (key id {stored_key_id}; the current key "
                          f"from {self.source} has id {self.key_id})")
                fix = (f"set {ENV_VAR} (or the key file) to the key it was stored with, or store the "
                       "credential again")
            else:
                reason = "its stored ciphertext does not authenticate (altered, or copied from another name)"
                fix = "store the credential again"
            raise SecretKeyError(f"credential '{name}' cannot be decrypted: {reason}",
                                 where="credentials", fix=fix) from exc


def load_secret_key(data_dir: Path, env_value: str | None = None) -> SecretKey:
    """The key from `env_value` (the NOETL_SECRET_KEY setting) if set, else from the data dir's key file."""
    if env_value is not None and env_value.strip():
        return SecretKey.parse(env_value, ENV_VAR)
    return key_file(data_dir / KEY_FILE_NAME)


def key_from_environment(data_dir: Path, environ: Mapping[str, str] | None = None) -> SecretKey:
    """For entry points: read NOETL_SECRET_KEY from the environment, else use the key file."""
    env = os.environ if environ is None else environ
    return load_secret_key(data_dir, env.get(ENV_VAR))


def key_file(path: Path) -> SecretKey:
    """Read the key file, creating it (mode 0600, atomically) if it does not exist yet."""
    if not path.exists():
        _create_key_file(path)
    info = path.stat()
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        mode = stat.S_IMODE(info.st_mode)
        raise SecretKeyError(f"the key file has mode {mode:04o}: group or others can access it, so it is "
                             "not used", where=str(path), fix=f"run `chmod 600 {path}`")
    return SecretKey.parse(path.read_text(encoding="ascii", errors="replace"), str(path))


def _create_key_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            os.fchmod(handle.fileno(), 0o600)
            handle.write(secrets.token_bytes(KEY_BYTES).hex() + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temp, path)  # atomic and never overwrites: a concurrent creator's key wins
            log.info("created the credential key file %s (mode 0600); back it up: without it the "
                     "stored credentials cannot be decrypted", path)
        except FileExistsError:
            pass
    finally:
        temp.unlink(missing_ok=True)
