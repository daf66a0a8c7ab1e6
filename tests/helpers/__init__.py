"""Shared test helpers for the client, interop and security suites.

Real peers over loopback: certificates from trustme, aiosmtpd in a thread,
Postfix's smtp-sink as a subprocess, and small scripted socket servers that
record every byte they receive. Nothing here mocks the client.
"""
