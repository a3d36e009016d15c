"""SSH key helpers: pure functions over key text, no I/O."""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization


def public_key_of(private_key: str) -> str:
    """The OpenSSH public key for an unencrypted private key (OpenSSH or PEM). Raises ValueError."""
    data = private_key.strip().encode() + b"\n"
    try:
        key = (
            serialization.load_ssh_private_key(data, password=None)
            if b"OPENSSH PRIVATE KEY" in data
            else serialization.load_pem_private_key(data, password=None)
        )
    except (ValueError, TypeError) as e:
        raise ValueError(f"not a usable unencrypted private key ({e})") from None
    return key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
