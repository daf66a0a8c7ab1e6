"""The PROXY protocol (HAProxy, versions 1 and 2), sans-I/O.

A load balancer that speaks the PROXY protocol sends one header before any
SMTP byte, saying who the real client is. ``parse_proxy_header`` takes what has
been received so far on a fresh connection and answers one of three ways:
``None`` (the bytes are a prefix of a valid header: read more), ``(info,
consumed)`` (a complete header; ``data[consumed:]`` is already SMTP), or
``ProxyHeaderError`` (this can never become a valid header: close the
connection, and log the message). It keeps no state, so a driver simply calls
it again with the longer buffer; it never asks for more than the protocol's
maximum (107 octets for a v1 line, 16 plus the length field for v2, the field
capped by ``V2_MAX_LENGTH``).

The checks are strict and early. A v1 line is validated field by field while
it arrives, so ``EHLO`` or ``PROXY TCP4 ::1`` is refused at the first octet
that rules it out rather than after 107 octets; the one exception is the text
after ``UNKNOWN``, which the specification tells receivers to ignore. A v2
header is refused as soon as its version, command, family or length octets are
wrong. References below are to sections of HAProxy's ``proxy-protocol.txt``.

Who may send a header at all is decided before any of this: the header
rewrites the client's address, so section 1 has receivers accept it "only
from a number of known sources". ``trusted_proxy`` says whether a peer is one
(``ServerConfig.proxy_from``, loopback by default; a Unix socket's peer is
local and always is); the server closes any other peer's connection without
reading from it, as it closes one whose header is bad.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from ..errors import MailwireError
from .envelope import Address, ProxyInfo
from .networks import Network, in_networks, peer_ip

__all__ = [
    "ProxyHeaderError",
    "parse_proxy_header",
    "trusted_proxy",
    "V1_PREFIX",
    "V1_MAX_LENGTH",
    "V2_SIGNATURE",
    "V2_HEADER_LENGTH",
    "V2_MAX_LENGTH",
]

# 2.1: a v1 header starts with "PROXY" and one space and is at most 107
# octets including the CRLF (the longest "PROXY UNKNOWN" line with two full
# IPv6 addresses and ports).
V1_PREFIX = b"PROXY "
V1_MAX_LENGTH = 107
# 2.2: the twelve-octet v2 signature, then version/command, family/transport
# and a big-endian 16-bit length of what follows.
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_HEADER_LENGTH = 16
# Our own cap on the v2 length field: the largest address block (AF_UNIX, 216
# octets) plus generous room for TLVs. The protocol allows 65535; an SMTP
# server has no use for that much and should not buffer it before a greeting.
V2_MAX_LENGTH = 4096

_V1_FAMILIES = {b"TCP4": 4, b"TCP6": 6}
_V1_UNKNOWN = b"UNKNOWN"
_V1_PROTOCOLS = (b"TCP4", b"TCP6", _V1_UNKNOWN)
_IPV4_CHARS = b"0123456789."
_IPV6_CHARS = b"0123456789abcdefABCDEF:."
_DIGITS = b"0123456789"
# Longest textual forms: 255.255.255.255 and ffff:...:ffff:255.255.255.255.
_MAX_ADDRESS_TEXT = {4: 15, 6: 45}

# 2.2: command (low nibble of octet 13) and family/transport (octet 14).
_LOCAL, _PROXY = 0x0, 0x1
_AF_UNSPEC, _AF_INET, _AF_INET6, _AF_UNIX = 0x0, 0x1, 0x2, 0x3
_UNSPEC, _STREAM, _DGRAM = 0x0, 0x1, 0x2
_FAMILY_NAMES = {_AF_INET: "AF_INET", _AF_INET6: "AF_INET6", _AF_UNIX: "AF_UNIX"}
# Address block sizes: two addresses and, for IP, two ports.
_ADDRESS_LENGTH = {_AF_INET: 12, _AF_INET6: 36, _AF_UNIX: 216}
_UNIX_PATH_LENGTH = 108


def trusted_proxy(peer: Address | None, networks: Sequence[Network]) -> bool:
    """May ``peer`` (a socket's peer name) send a PROXY header? A Unix
    socket's peer is local: yes. An IP peer: if it is in ``networks``.
    No peer name at all, or one that is no address: no (nothing to trust)."""
    if isinstance(peer, str):
        return True  # a Unix socket: only this machine reaches it
    ip = peer_ip(peer)
    return ip is not None and in_networks(ip, networks)


class ProxyHeaderError(MailwireError):
    """A PROXY header is malformed or unsupported; the server closes the connection.

    The message says what was wrong, for the server's log.
    """


def parse_proxy_header(
    data: bytes, *, proxy: Address | None = None
) -> tuple[ProxyInfo, int] | None:
    """Parse the PROXY header at the start of ``data``.

    Returns ``None`` while ``data`` is a prefix of a valid header, else
    ``(info, consumed)`` with ``consumed`` the header's length. ``proxy`` is the
    address of the TCP peer (the proxy itself), copied into ``info.proxy``.
    Raises ``ProxyHeaderError`` once ``data`` cannot start a valid header.
    """
    data = bytes(data[: V2_HEADER_LENGTH + V2_MAX_LENGTH])
    if V2_SIGNATURE.startswith(data[: len(V2_SIGNATURE)]) and data[:1] == b"\r":
        return _parse_v2(data, proxy)
    if V1_PREFIX.startswith(data[: len(V1_PREFIX)]):
        return None if len(data) < len(V1_PREFIX) else _parse_v1(data, proxy)
    raise ProxyHeaderError(
        f"no PROXY protocol header: the connection began with {data[:16]!r}"
    )


# -- version 1 --------------------------------------------------------------


def _parse_v1(data: bytes, proxy: Address | None) -> tuple[ProxyInfo, int] | None:
    window = data[:V1_MAX_LENGTH]
    end = window.find(b"\r\n")
    if end < 0:
        body = window[len(V1_PREFIX):]
        # A final CR may be the first half of the CRLF.
        _check_v1_body(body[:-1] if body.endswith(b"\r") else body, complete=False)
        if len(window) >= V1_MAX_LENGTH:
            raise ProxyHeaderError(
                f"PROXY v1 line has no CRLF within {V1_MAX_LENGTH} octets"
            )
        return None
    source, destination = _check_v1_body(window[len(V1_PREFIX):end], complete=True)
    return ProxyInfo(1, source, destination, proxy), end + 2


def _check_v1_body(
    body: bytes, *, complete: bool
) -> tuple[Address | None, Address | None]:
    """Validate what follows "PROXY "; ``complete`` says the CRLF was seen.

    For an incomplete body, only what can never become valid is refused: whole
    fields are checked in full, the last (growing) one by its characters.
    """
    if b"\r" in body or b"\n" in body:
        raise ProxyHeaderError("PROXY v1 line contains a bare CR or LF")
    protocol, space, rest = body.partition(b" ")
    if not space and not complete:
        if not any(p.startswith(protocol) for p in _V1_PROTOCOLS):
            raise ProxyHeaderError(f"PROXY v1: unknown protocol {protocol!r}")
        return None, None
    if protocol == _V1_UNKNOWN:
        # 2.1: with UNKNOWN the receiver must ignore everything up to the CRLF.
        return None, None
    family = _V1_FAMILIES.get(protocol)
    if family is None:
        raise ProxyHeaderError(
            f"PROXY v1: unknown protocol {protocol!r} (TCP4, TCP6 or UNKNOWN)"
        )
    fields = rest.split(b" ")
    if len(fields) > 4 or (complete and len(fields) < 4):
        raise ProxyHeaderError(
            f"PROXY v1 {protocol.decode()}: expected 4 fields separated by single "
            f"spaces, got {len(fields)}"
        )
    if not complete:
        *whole, growing = fields
        _check_v1_partial(growing, len(whole), family)
        fields = whole
    addresses = [_v1_address(field, family) for field in fields[:2]]
    ports = [_v1_port(field) for field in fields[2:]]
    if not complete:
        return None, None
    (src, dst), (sport, dport) = addresses, ports
    return (src, sport), (dst, dport)


def _check_v1_partial(field: bytes, index: int, family: int) -> None:
    """Refuse a field still arriving that no further octets can make valid."""
    if not field:
        return
    if index >= 2:
        # Every non-empty prefix of a valid port is itself a valid port.
        _v1_port(field)
        return
    allowed = _IPV4_CHARS if family == 4 else _IPV6_CHARS
    if field.translate(None, allowed) or len(field) > _MAX_ADDRESS_TEXT[family]:
        raise ProxyHeaderError(f"PROXY v1: invalid IPv{family} address {field!r}")


def _v1_address(field: bytes, family: int) -> str:
    allowed = _IPV4_CHARS if family == 4 else _IPV6_CHARS
    # The character check refuses what ipaddress would let through: IPv6
    # scope ids ("%eth0"), and non-ASCII digits once decoded.
    if field and not field.translate(None, allowed):
        try:
            if family == 4:
                return str(ipaddress.IPv4Address(field.decode("ascii")))
            return str(ipaddress.IPv6Address(field.decode("ascii")))
        except ValueError:
            pass
    raise ProxyHeaderError(f"PROXY v1: invalid IPv{family} address {field!r}")


def _v1_port(field: bytes) -> int:
    # 2.1: decimal, 0-65535, no leading zeros (and so no sign, no spaces).
    if (
        not field
        or field.translate(None, _DIGITS)
        or len(field) > 5
        or (len(field) > 1 and field.startswith(b"0"))
        or int(field) > 65535
    ):
        raise ProxyHeaderError(f"PROXY v1: invalid port {field!r}")
    return int(field)


# -- version 2 --------------------------------------------------------------


def _parse_v2(data: bytes, proxy: Address | None) -> tuple[ProxyInfo, int] | None:
    if len(data) <= len(V2_SIGNATURE):
        return None
    version, command = data[12] >> 4, data[12] & 0x0F
    if version != 2:
        raise ProxyHeaderError(f"PROXY v2: unsupported version {version}")
    if command not in (_LOCAL, _PROXY):
        raise ProxyHeaderError(f"PROXY v2: unknown command 0x{command:x}")
    if len(data) < 14:
        return None
    family, transport = data[13] >> 4, data[13] & 0x0F
    if command == _PROXY:
        _check_v2_family(family, transport)
    if len(data) < V2_HEADER_LENGTH:
        return None
    length = int.from_bytes(data[14:16], "big")
    if length > V2_MAX_LENGTH:
        raise ProxyHeaderError(
            f"PROXY v2: length {length} exceeds our limit of {V2_MAX_LENGTH}"
        )
    total = V2_HEADER_LENGTH + length
    if len(data) < total:
        return None
    if command == _LOCAL or family == _AF_UNSPEC or transport == _UNSPEC:
        # 2.2: LOCAL (a health check) uses the real endpoints and discards the
        # block; an unspecified family or transport means address
        # information the receiver should ignore.
        return ProxyInfo(2, None, None, proxy), total
    block = data[V2_HEADER_LENGTH:total]
    source, destination = _v2_addresses(family, block)
    tlvs = _v2_tlvs(block[_ADDRESS_LENGTH[family]:])
    return ProxyInfo(2, source, destination, proxy, tlvs), total


def _check_v2_family(family: int, transport: int) -> None:
    if family > _AF_UNIX:
        raise ProxyHeaderError(f"PROXY v2: unknown address family 0x{family:x}")
    if transport > _DGRAM:
        raise ProxyHeaderError(f"PROXY v2: unknown transport 0x{transport:x}")
    if transport == _DGRAM:
        raise ProxyHeaderError("PROXY v2: datagram transport cannot carry SMTP")


def _v2_addresses(family: int, block: bytes) -> tuple[Address, Address]:
    need = _ADDRESS_LENGTH[family]
    if len(block) < need:
        raise ProxyHeaderError(
            f"PROXY v2: {len(block)} octets cannot hold an {_FAMILY_NAMES[family]} "
            f"address block ({need} needed)"
        )
    if family == _AF_UNIX:
        return (
            _unix_path(block[:_UNIX_PATH_LENGTH]),
            _unix_path(block[_UNIX_PATH_LENGTH:need]),
        )
    size = 4 if family == _AF_INET else 16
    # ip_address reads 4 octets as IPv4 and 16 as IPv6.
    src = str(ipaddress.ip_address(block[:size]))
    dst = str(ipaddress.ip_address(block[size : 2 * size]))
    sport = int.from_bytes(block[2 * size : 2 * size + 2], "big")
    dport = int.from_bytes(block[2 * size + 2 : need], "big")
    return (src, sport), (dst, dport)


def _unix_path(raw: bytes) -> str:
    """A NUL-padded sun_path as text; a Linux abstract name keeps its leading NUL."""
    if raw[:1] == b"\0" and raw.strip(b"\0"):
        name = b"\0" + raw[1:].rstrip(b"\0")
    else:
        name = raw.partition(b"\0")[0]
    # Like os.fsdecode on a UTF-8 system: any octets survive the round trip.
    return name.decode("utf-8", "surrogateescape")


def _v2_tlvs(area: bytes) -> tuple[tuple[int, bytes], ...]:
    """2.2.1: type (1 octet), big-endian length (2), value; bounds checked."""
    tlvs: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(area):
        if len(area) - pos < 3:
            raise ProxyHeaderError(
                f"PROXY v2: {len(area) - pos} stray octets where a TLV should start"
            )
        kind = area[pos]
        end = pos + 3 + int.from_bytes(area[pos + 1 : pos + 3], "big")
        if end > len(area):
            raise ProxyHeaderError(
                f"PROXY v2: TLV 0x{kind:02x} claims {end - pos - 3} octets, "
                f"{len(area) - pos - 3} remain"
            )
        tlvs.append((kind, area[pos + 3 : end]))
        pos = end
    return tuple(tlvs)
