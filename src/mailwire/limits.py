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
    # RFC 5321 4.5.3.2.7: a server should wait at least 5 minutes for a
    # command: the whole line, from when the server is ready for it.
    server_idle_timeout: float = 300.0
    # Our own, mirroring the client's data block timeout (RFC 5321 4.5.3.2.5):
    # the deadline a message's content starts with (see min_data_rate).
    server_data_timeout: float = 180.0
    # Our own: concurrent connections a server accepts (421 4.7.0 beyond).
    connections: int = 1000
    # Our own: how long a PROXY protocol header may take to arrive.
    proxy_header_timeout: float = 10.0
    # Our own: octets a server buffers from one client before it stops reading
    # (flow control, so a client that pipelines without reading replies, or
    # sends faster than the backend stores, cannot grow our memory).
    receive_buffer: int = 1 << 20
    # Postfix smtpd_client_connection_count_limit (default 50): connections
    # one client address may hold at once (421 4.7.0 at accept beyond; 0: no
    # cap). IPv6 addresses count by /64. ServerConfig.client_limit_exempt
    # names the networks it does not apply to (loopback by default).
    connections_per_client: int = 50
    # Postfix smtpd_min_data_rate (default 500): octets per second a client
    # sending a message (DATA, or all the BDAT chunks of one) must keep up.
    # The content's deadline starts at server_data_timeout and each octet
    # read moves it 1/min_data_rate s later, never beyond server_data_timeout
    # from now; a command line gets server_idle_timeout whole (Postfix
    # smtpd_per_request_deadline). A trickle of bytes re-arms neither.
    min_data_rate: int = 500
    # Postfix smtpd_junk_command_limit (default 100): NOOP, RSET, VRFY, EXPN,
    # HELP, EHLO/HELO/LHLO a session may send without delivering a message;
    # beyond, each one counts toward bad_commands (0: no limit).
    junk_commands: int = 100
    # Our own: commands answered for one connection before the event loop
    # turns to the others, so one client's pipelined flood cannot starve them.
    commands_per_turn: int = 16
    # Our own: octets of replies held for a client that does not read them
    # (unsent, in our buffer and the transport's) before its commands stop
    # being read; it is dropped if it still does not read after the idle timeout.
    reply_buffer: int = 16384
    # Failed AUTH (RFC 4954 4; Postfix smtpd_error_sleep_time, 1 s, grown by
    # one step per error as Postfix 2.0 did): the n-th failure of a client
    # in the window is answered after n * auth_failure_delay seconds, and
    # each counts toward bad_commands. Failures are counted per client
    # address across its connections for auth_failure_window seconds from
    # the first; past auth_failures in one window, AUTH from that address is
    # answered 421 4.7.0 without looking at the credentials until the window
    # ends (0: no such budget).
    auth_failure_delay: float = 1.0
    auth_failures: int = 30
    auth_failure_window: float = 600.0

    def with_(self, **changes: int | float) -> "Limits":
        """A copy with some fields changed (``Limits`` itself never changes)."""
        return replace(self, **changes)  # type: ignore[arg-type]


DEFAULT_LIMITS = Limits()
