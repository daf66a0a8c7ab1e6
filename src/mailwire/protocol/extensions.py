"""What a server offers: its service extensions and its AUTH policy, in one value.

``ServerExtensions`` is the whole of what a server advertises, and
``ServerConnection`` is built with it. The EHLO keywords are derived from it
here (``keywords``) and nowhere else, and the core refuses, from the same
fields, whatever they do not allow: a MAIL or RCPT parameter of an extension
not offered (555), AUTH where it is not offered (502) or not over plaintext
(538), STARTTLS where no handshake can follow (454). So what EHLO says is
exactly what is then enforced, for every driver.

A few keywords are always there, because the core always implements them:
PIPELINING, 8BITMIME, SIZE (with the core's ``Limits.message_size``) and
ENHANCEDSTATUSCODES; REQUIRETLS once the session is encrypted (RFC 8689 4).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..sasl import SERVER_MECHANISMS

__all__ = ["ServerExtensions"]


@dataclass(frozen=True, slots=True)
class ServerExtensions:
    """The extensions a server offers (each field names its RFC).

    ``starttls``: the driver can run a TLS handshake (it has a context);
    offered until the session is encrypted. ``auth_mechanisms``: the SASL
    mechanisms offered, upper-case, each one ``sasl.SERVER_MECHANISMS``
    knows (the core runs the exchange); empty, no AUTH. ``plaintext_auth``:
    AUTH is offered before TLS too (RFC 4954 4 otherwise answers 538).
    ``auth_required``: MAIL is refused (530 5.7.0, RFC 4954 6) until the
    client has authenticated.
    """

    chunking: bool = True  # CHUNKING and BINARYMIME, RFC 3030
    dsn: bool = True  # RFC 3461
    smtputf8: bool = True  # RFC 6531
    starttls: bool = False  # RFC 3207
    auth_mechanisms: tuple[str, ...] = ()  # RFC 4954
    plaintext_auth: bool = False
    auth_required: bool = False
    # With no size limit, SIZE is advertised as ``SIZE 0`` (RFC 1870 4);
    # False leaves it out then, as smtpd's EHLO did. A SIZE parameter is
    # accepted either way: the core always implements it.
    size_without_limit: bool = True

    def __post_init__(self) -> None:
        mechanisms = tuple(m.upper() for m in self.auth_mechanisms)
        unknown = [m for m in mechanisms if m not in SERVER_MECHANISMS]
        if unknown:
            raise ValueError(f"unknown AUTH mechanisms: {unknown}; known: {sorted(SERVER_MECHANISMS)}")
        object.__setattr__(self, "auth_mechanisms", mechanisms)

    def auth_offered(self, tls: bool) -> bool:
        """Is AUTH advertised (and so accepted) in this TLS state?"""
        return bool(self.auth_mechanisms) and (tls or self.plaintext_auth)

    def keywords(self, *, max_size: int, tls: bool) -> list[str]:
        """The EHLO keywords in this TLS state (RFC 5321 4.1.1.1 and the
        extensions' RFCs), in the order mailwire has always sent them."""
        keywords = ["PIPELINING", "8BITMIME"]
        if max_size or self.size_without_limit:
            keywords.append(f"SIZE {max_size}")
        keywords.append("ENHANCEDSTATUSCODES")
        if self.smtputf8:
            keywords.append("SMTPUTF8")
        if self.chunking:
            keywords += ["CHUNKING", "BINARYMIME"]
        if self.dsn:
            keywords.append("DSN")
        if self.starttls and not tls:
            keywords.append("STARTTLS")
        if self.auth_offered(tls):
            keywords.append("AUTH " + " ".join(self.auth_mechanisms))
        if tls:
            keywords.append("REQUIRETLS")
        return keywords
