"""Client addresses, and the networks a server's settings name.

Two settings name networks: the proxies trusted to send a PROXY header
(``ServerConfig.proxy_from``) and the clients exempt from per-address limits
(``ServerConfig.client_limit_exempt``). Both parse the same way and match a
peer the same way, here: a socket's peer name becomes one IP address (an IPv6
zone dropped, and an IPv4 client of a dual-stack socket seen as the IPv4
address it is), so a rule written as ``127.0.0.0/8`` holds however the
listening socket was opened.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

__all__ = ["Network", "IPAddress", "parse_networks", "peer_ip", "in_networks"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_networks(specs: Iterable[str | Network]) -> tuple[Network, ...]:
    """The networks ``specs`` name (``10.0.0.0/8``, ``::1``, ``[::1]``), or
    ValueError naming the bad one.

    Host bits set (``10.1.2.3/8``) are refused rather than masked: the
    address is more likely a typo than a way of writing the network.
    """
    if isinstance(specs, str):
        raise ValueError(f"expected a sequence of networks, not the string {specs!r}")
    networks: list[Network] = []
    for spec in specs:
        if isinstance(spec, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
            networks.append(spec)
            continue
        try:
            networks.append(ipaddress.ip_network(spec.strip().strip("[]")))
        except ValueError as err:
            raise ValueError(f"not a network or address (like 10.0.0.0/8 or ::1): {spec!r}: {err}") from None
    return tuple(networks)


def peer_ip(peer: object) -> IPAddress | None:
    """The IP address of a socket's peer name; None for a Unix socket's
    (a string) or anything else that is not an IP peer."""
    if not isinstance(peer, tuple) or not peer:
        return None
    try:
        ip = ipaddress.ip_address(str(peer[0]).partition("%")[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def in_networks(ip: IPAddress, networks: Sequence[Network]) -> bool:
    return any(ip in network for network in networks)
