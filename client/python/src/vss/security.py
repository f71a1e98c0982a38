"""What a client presents to a cluster that asks for it: TLS to the
client port (checking the instances' certificates, optionally presenting
one of its own) and a token on every call."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc

from .errors import ConfigurationError

_PEM_CERT = b"-----BEGIN CERTIFICATE-----"
_PEM_KEY_MARK = b"PRIVATE KEY-----"


@dataclass(frozen=True)
class Security:
    """TLS and token settings of a `Client`; the default is neither.

    `ca_pem`: CA certificates (PEM) the instances' certificates must be
    signed by; setting it turns TLS on. `identity_pem`: this client's
    certificate chain and private key (PEM), for client ports that require
    client certificates; needs `ca_pem`. `token`: sent as
    `authorization: Bearer <token>` on every call.
    """

    ca_pem: bytes | None = None
    identity_pem: tuple[bytes, bytes] | None = None
    token: str | None = None

    @classmethod
    def from_files(
        cls,
        *,
        ca: str | Path | None = None,
        cert: str | Path | None = None,
        key: str | Path | None = None,
        token: str | None = None,
        token_file: str | Path | None = None,
    ) -> Security:
        """Reads the PEM files (and the token file) named; a file that
        cannot be read is an error naming the setting and the file."""

        def read(what: str, path: str | Path) -> bytes:
            try:
                return Path(path).read_bytes()
            except OSError as e:
                raise ConfigurationError(what, f"cannot read {path}: {e.strerror}") from e

        if (cert is None) != (key is None):
            raise ConfigurationError(
                "client certificate", "needs both the certificate and the key file"
            )
        if token_file is not None:
            token = read("token", token_file).decode("utf-8", "replace").strip()
        return cls(
            ca_pem=read("CA", ca) if ca is not None else None,
            identity_pem=(read("client certificate", cert), read("client key", key))
            if cert is not None and key is not None
            else None,
            token=token,
        )

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """The metadata every call carries."""
        if self.token is None:
            return ()
        token = self.token.strip()
        if not token:
            raise ConfigurationError("token", "empty")
        if not all(0x20 < ord(c) < 0x7F for c in token):
            raise ConfigurationError("token", "not printable ASCII")
        return (("authorization", f"Bearer {token}"),)

    def credentials(self) -> grpc.ChannelCredentials | None:
        """The channel credentials for TLS, or None for plaintext."""
        if self.ca_pem is None:
            if self.identity_pem is not None:
                raise ConfigurationError(
                    "client certificate",
                    "needs the CA of the instances' certificates too (TLS)",
                )
            return None
        if _PEM_CERT not in self.ca_pem:
            raise ConfigurationError("CA", "no PEM certificate")
        if self.identity_pem is None:
            return grpc.ssl_channel_credentials(root_certificates=self.ca_pem)
        chain, key = self.identity_pem
        if _PEM_CERT not in chain:
            raise ConfigurationError("client certificate", "no PEM certificate")
        if _PEM_KEY_MARK not in key:
            raise ConfigurationError("client key", "no PEM private key")
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca_pem, private_key=key, certificate_chain=chain
        )
