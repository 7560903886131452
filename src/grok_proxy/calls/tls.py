"""Which certificate authorities upstream TLS trusts: one rule for HTTP and gRPC.

certifi's roots, plus a company CA bundle (XAI_CA_BUNDLE), SSL_CERT_FILE and every file in
SSL_CERT_DIR, read from settings, so a value in `.env` counts as much as the environment.
Added to certifi's roots, not instead of them: a TLS-inspecting proxy's CA is usually
needed beside the public roots, not in place of them.
"""

from __future__ import annotations

from pathlib import Path

import certifi

from grok_proxy.config import Settings

PEM_MARK = b"-----BEGIN CERTIFICATE-----"


def trusted_roots(settings: Settings) -> bytes:
    """One PEM bundle: certifi's roots and the extra ones the settings name."""
    files = [
        Path(name)
        for name in (settings.upstream.ca_bundle, settings.upstream.ssl_cert_file)
        if name
    ]
    for directory in filter(None, settings.upstream.ssl_cert_dir.split(":")):
        files.extend(sorted(path for path in Path(directory).glob("*") if path.is_file()))
    extra = (path.read_bytes() for path in files)
    return Path(certifi.where()).read_bytes() + b"\n".join(pem for pem in extra if PEM_MARK in pem)
