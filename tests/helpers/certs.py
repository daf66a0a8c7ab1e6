"""Certificates for TLS tests: one trustme CA per session, contexts on demand."""

from __future__ import annotations

import ssl

import trustme

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def server_context(ca: trustme.CA, *hosts: str) -> ssl.SSLContext:
    """A server context with a leaf certificate for ``hosts`` (loopback by default)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*(hosts or LOOPBACK_NAMES)).configure_cert(context)
    return context


def client_context(ca: trustme.CA) -> ssl.SSLContext:
    """A verifying client context that trusts ``ca`` (and nothing else)."""
    return ssl.create_default_context(cadata=ca.cert_pem.bytes().decode("ascii"))
