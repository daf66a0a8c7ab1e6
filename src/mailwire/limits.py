"""Every size and time limit mailwire enforces, in one frozen object.

A limit that lives as a literal inside a parser is a limit nobody can find or
change. Each field here names the RFC section it comes from (or says plainly
that it is our own safety margin), and both protocol roles and every driver read
their limits from a ``Limits`` instance, so one object configures a whole
client or server.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

__all__ = ["Limits", "DEFAULT_LIMITS"]


@dataclass(frozen=True, slots=True)
class Limits:
    # RFC 5321 4.5.3.1.4: a command line is at most 512 octets including CRLF.
    # Extensions (AUTH with long tokens, many ESMTP parameters) raise this in
    # practice, so the server default allows a little more for AUTH lines only.
    command_line: int = 512
    # RFC 4954 4: an AUTH initial response may make the line longer than 512;
    # XOAUTH2 bearer tokens are routinely 1-2 KB.
    auth_line: int = 12288
    # RFC 5321 4.5.3.1.6: a text line is at most 1000 octets including CRLF.
    # The server refuses a message with a longer line (550 5.6.0) in DATA and
    # in text (not BINARYMIME) BDAT; 0 means no limit.
    text_line: int = 1000
    # RFC 5321 4.5.3.1.5: a reply line is at most 512 octets including CRLF.
    # Real servers exceed it (long EHLO keywords, banners), so we read up to
    # 2 KiB per line before giving up: enough slack, still bounded.
    reply_line: int = 2048
    # Our own cap on one whole (multi-line) reply, so a peer sending endless
    # continuation lines cannot grow our memory without bound.
    reply_total: int = 65536
    # RFC 5321 4.5.3.1.8: servers must accept at least 100 recipients.
    recipients: int = 1000
    # RFC 1870: the SIZE we advertise and enforce; 0 means no limit.
    message_size: int = 33554432
    # Our own: how many unrecognised or malformed commands before 421.
    bad_commands: int = 20
    # RFC 5321 4.5.3.2: client timeouts, in seconds.
    greeting_timeout: float = 300.0  # 4.5.3.2.1 initial 220: 5 minutes
    mail_timeout: float = 300.0  # 4.5.3.2.2 MAIL: 5 minutes
    rcpt_timeout: float = 300.0  # 4.5.3.2.3 RCPT: 5 minutes
    data_init_timeout: float = 120.0  # 4.5.3.2.4 DATA initiation: 2 minutes
    data_block_timeout: float = 180.0  # 4.5.3.2.5 data block: 3 minutes
    data_end_timeout: float = 600.0  # 4.5.3.2.6 DATA termination: 10 minutes
    # RFC 5321 4.5.3.2.7: a server should wait at least 5 minutes for a command.
    server_idle_timeout: float = 300.0
    # Our own, mirroring the client's data block timeout (RFC 5321 4.5.3.2.5):
    # how long a server waits for the next piece of a message.
    server_data_timeout: float = 180.0
    # Our own: concurrent connections a server accepts (421 4.7.0 beyond).
    connections: int = 1000
    # Our own: how long a PROXY protocol header may take to arrive.
    proxy_header_timeout: float = 10.0
    # Our own: octets a server buffers from one client before it stops reading
    # (flow control, so a client that pipelines without reading replies, or
    # sends faster than the backend stores, cannot grow our memory).
    receive_buffer: int = 1 << 20

    def with_(self, **changes: int | float) -> "Limits":
        """A copy with some fields changed (``Limits`` itself never changes)."""
        return replace(self, **changes)  # type: ignore[arg-type]


DEFAULT_LIMITS = Limits()
