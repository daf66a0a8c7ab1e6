"""A small, strict, configurable SMTP/LMTP server script for ``ScriptedServer``.

Real servers hide what they received behind their own parsing (aiosmtpd
upper-cases parameters; smtp-sink throws messages away). This one records the
command lines exactly as they arrived, parses DATA line by line (the canonical
receiver: a line ``.`` ends it, a leading dot is removed) and BDAT by exact
octet count, and lets a test choose each reply. It answers each command as soon
as it has read it, so pipelined clients work, and it counts the commands that
arrived before the previous one was answered (``sent_ahead``), which shows
whether a client waited for each reply.

After a refused BDAT (RFC 3030 2 leaves the state to the server) it acts as
asked: by default a refused message (the reply to its LAST) ends the
transaction, as Postfix and mailwire do, while a BDAT refused for want of a
recipient leaves the MAIL in place and the next RCPTs join it (as Exim
does); ``after_refused_bdat="stuck"`` keeps the failed transaction until
RSET: MAIL, RCPT and DATA get 503, BDAT chunks are discarded;
``"stuck-until-last"`` ends that at the next BDAT LAST too (Postfix after a
refused chunk that is not the last).
"""

from __future__ import annotations

import base64
import binascii
import re
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from .scripted import Peer

__all__ = ["MiniSMTP", "Received"]

_PATH = re.compile(r"<([^>]*)>")
_BDAT = re.compile(r"BDAT ([0-9]+)( LAST)?", re.I)


@dataclass
class Received:
    """One transaction as the server saw it."""

    mail: str
    rcpts: list[str] = field(default_factory=list)
    accepted: list[str] = field(default_factory=list)
    via: str = ""  # "DATA" or "BDAT"
    content: bytes = b""  # DATA: dot-unstuffed; BDAT: the chunks joined
    chunks: list[bytes] = field(default_factory=list)
    bdat_lines: list[str] = field(default_factory=list)
    final: list[str] = field(default_factory=list)  # the replies to its end (LMTP: one per recipient)

    @property
    def delivered(self) -> bool:
        return any(reply.startswith("2") for reply in self.final)

    @property
    def mail_from(self) -> str:
        match = _PATH.search(self.mail)
        return match[1] if match else ""

    @property
    def rcpt_to(self) -> list[str]:
        return [_address(line) for line in self.rcpts]


def _address(line: str) -> str:
    match = _PATH.search(line)
    return match[1] if match else ""


RcptPolicy = Callable[[str], "str | None"]
FinalPolicy = Callable[[Received, "str | None"], str]
ChunkPolicy = Callable[[Received, bytes], "str | None"]  # a refusal for a chunk, or None
AfterRefusedBdat = Literal["stuck", "stuck-until-last"] | None


class MiniSMTP:
    """The server side of an SMTP (or LMTP) session, as a ``ScriptedServer`` script."""

    def __init__(
        self,
        *,
        extensions: Sequence[str] = ("PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES"),
        greeting: str = "220 mini.test ESMTP ready",
        lmtp: bool = False,
        mail_reply: str | None = None,
        mail_policy: RcptPolicy | None = None,
        rcpt_reply: RcptPolicy | None = None,
        data_reply: str = "354 End data with <CR><LF>.<CR><LF>",
        final_reply: FinalPolicy | None = None,
        chunk_reply: ChunkPolicy | None = None,
        after_refused_bdat: AfterRefusedBdat = None,
        starttls_reply: str = "220 2.0.0 Ready to start TLS",
        tls_context: ssl.SSLContext | None = None,
        credentials: tuple[str, str] | None = None,
    ) -> None:
        self.extensions = list(extensions)
        self.greeting = greeting
        self.lmtp = lmtp
        self.mail_reply = mail_reply
        self.mail_policy = mail_policy  # the reply to one sender, or None for the default
        self.rcpt_reply = rcpt_reply
        self.data_reply = data_reply
        self.final_reply = final_reply
        self.chunk_reply = chunk_reply  # for chunks that are not the LAST
        self.after_refused_bdat = after_refused_bdat
        self.stuck = False  # inside a failed transaction (after_refused_bdat)
        self.discarded: list[bytes] = []  # chunks thrown away while stuck
        self.starttls_reply = starttls_reply
        self.tls_context = tls_context
        self.credentials = credentials
        self.commands: list[str] = []  # every command line, CRLF stripped (AUTH lines too)
        self.transactions: list[Received] = []
        self.sent_ahead = 0  # commands that were already buffered when the previous was answered
        self.tls = False

    # -- the session ---------------------------------------------------------

    def __call__(self, peer: Peer) -> None:
        self.tls = False
        self.stuck = False
        txn: Received | None = None
        peer.reply(self.greeting)
        while True:
            line = peer.recv_line()
            if not line.endswith(b"\r\n"):
                return  # the client closed
            text = line[:-2].decode("utf-8", "surrogateescape")
            self.commands.append(text)
            verb = text.split(" ", 1)[0].upper()
            if verb == "QUIT":
                peer.reply("221 2.0.0 Bye")
                return
            txn = self._dispatch(peer, verb, text, txn)

    def _dispatch(self, peer: Peer, verb: str, text: str, txn: Received | None) -> Received | None:
        if self.stuck and verb in ("MAIL", "RCPT", "DATA", "BDAT"):
            self._stuck(peer, verb, text)
            return None
        if verb in ("EHLO", "HELO", "LHLO", "RSET"):
            self.stuck = False
        if verb in ("EHLO", "HELO", "LHLO"):
            self._hello(peer, verb)
            return None
        if verb == "STARTTLS":
            self._starttls(peer)
            return None
        if verb == "AUTH":
            self._auth(peer, text)
        elif verb == "MAIL":
            return self._mail(peer, text, txn)
        elif verb == "RCPT":
            self._rcpt(peer, text, txn)
        elif verb == "DATA":
            return self._data(peer, txn)
        elif verb == "BDAT":
            return self._bdat(peer, text, txn)
        elif verb == "RSET":
            self._answer(peer, "250 2.0.0 Reset")
            return None
        elif verb == "NOOP":
            self._answer(peer, "250 2.0.0 OK")
        elif verb == "VRFY":
            self._answer(peer, "252 2.1.5 Cannot verify")
        else:
            self._answer(peer, "500 5.5.2 Command not recognized")
        return txn

    @property
    def delivered(self) -> list[Received]:
        """The transactions whose end was answered 2xx (one recipient's, over LMTP)."""
        return [txn for txn in self.transactions if txn.delivered]

    def _stuck(self, peer: Peer, verb: str, text: str) -> None:
        """Inside a failed transaction: nothing but RSET gets out of it."""
        if verb != "BDAT":
            self._answer(peer, f"503 5.5.1 {verb} in a failed transaction: RSET first")
            return
        match = _BDAT.fullmatch(text)
        if match is None:
            self._answer(peer, "501 5.5.4 Syntax: BDAT size [LAST]")
            return
        self.discarded.append(peer.recv_exact(int(match[1])))
        if match[2] is not None and self.after_refused_bdat == "stuck-until-last":
            self.stuck = False
        self._answer(peer, "551 5.0.0 Discarded after an earlier error")

    def _refuse_bdat(self, peer: Peer, reply: str) -> None:
        """Answer a refused BDAT; stuck from now on, if so asked."""
        self.stuck = self.after_refused_bdat is not None
        self._answer(peer, reply)

    def _answer(self, peer: Peer, *lines: str) -> None:
        if peer.buffered():
            self.sent_ahead += 1
        peer.reply(*lines)

    def _hello(self, peer: Peer, verb: str) -> None:
        if self.lmtp != (verb == "LHLO"):
            self._answer(peer, f"500 5.5.1 {verb} not accepted here")
            return
        if verb == "HELO":
            self._answer(peer, "250 mini.test")
            return
        keywords = [k for k in self.extensions if not (self.tls and k.upper() == "STARTTLS")]
        lines = ["mini.test", *keywords]
        self._answer(peer, *(f"250{'-' if i < len(lines) - 1 else ' '}{word}" for i, word in enumerate(lines)))

    def _starttls(self, peer: Peer) -> None:
        if "STARTTLS" not in (k.upper() for k in self.extensions) or self.tls:
            self._answer(peer, "502 5.5.1 STARTTLS not available")
            return
        self._answer(peer, self.starttls_reply)
        if self.starttls_reply.startswith("220") and self.tls_context is not None:
            peer.starttls(self.tls_context)
            self.tls = True

    # -- AUTH ----------------------------------------------------------------

    def _auth(self, peer: Peer, text: str) -> None:
        words = text.split(" ")
        mechanism = words[1].upper() if len(words) > 1 else ""
        initial = words[2] if len(words) > 2 else None
        if mechanism == "PLAIN":
            if initial is None:
                peer.reply("334 ")
                initial = self._auth_line(peer)
            fields = _b64(initial).split(b"\0")
            user, password = (fields[1], fields[2]) if len(fields) == 3 else (b"", b"")
        elif mechanism == "LOGIN":
            peer.reply("334 VXNlcm5hbWU6")
            user = _b64(self._auth_line(peer))
            peer.reply("334 UGFzc3dvcmQ6")
            password = _b64(self._auth_line(peer))
        else:
            peer.reply("504 5.5.4 Unrecognized authentication type")
            return
        expected = tuple(s.encode() for s in self.credentials) if self.credentials else None
        if expected == (user, password):
            peer.reply("235 2.7.0 Authentication successful")
        else:
            peer.reply("535 5.7.8 Authentication credentials invalid")

    def _auth_line(self, peer: Peer) -> str:
        line = peer.recv_line().rstrip(b"\r\n").decode("ascii", "replace")
        self.commands.append(line)
        return line

    # -- transactions --------------------------------------------------------

    def _mail(self, peer: Peer, text: str, txn: Received | None) -> Received | None:
        if txn is not None:
            self._answer(peer, "503 5.5.1 Nested MAIL command")
            return txn
        chosen = self.mail_policy(_address(text)) if self.mail_policy else None
        reply = chosen or self.mail_reply or "250 2.1.0 Sender OK"
        self._answer(peer, reply)
        return Received(text) if reply.startswith("2") else None

    def _rcpt(self, peer: Peer, text: str, txn: Received | None) -> None:
        if txn is None:
            self._answer(peer, "503 5.5.1 Need MAIL first")
            return
        address = _address(text)
        reply = (self.rcpt_reply(address) if self.rcpt_reply else None) or "250 2.1.5 Recipient OK"
        txn.rcpts.append(text)
        if reply.startswith("2"):
            txn.accepted.append(address)
        self._answer(peer, reply)

    def _data(self, peer: Peer, txn: Received | None) -> Received | None:
        if txn is None or not txn.accepted:
            self._answer(peer, "554 5.5.1 No valid recipients")
            return txn
        self._answer(peer, self.data_reply)
        if not self.data_reply.startswith("354"):
            return txn
        txn.via = "DATA"
        body = bytearray()
        while True:
            line = peer.recv_line()
            if not line.endswith(b"\r\n"):
                raise EOFError("client closed in the middle of DATA")
            if line == b".\r\n":
                break
            body += line[1:] if line.startswith(b".") else line
        txn.content = bytes(body)
        self._finish(peer, txn)
        return None

    def _bdat(self, peer: Peer, text: str, txn: Received | None) -> Received | None:
        match = _BDAT.fullmatch(text)
        if match is None:
            self._answer(peer, "501 5.5.4 Syntax: BDAT size [LAST]")
            return txn
        chunk = peer.recv_exact(int(match[1]))
        if txn is None or not txn.accepted:
            if txn is not None and self.after_refused_bdat is not None:
                self._refuse_bdat(peer, "554 5.5.1 No valid recipients")
                return None
            self._answer(peer, "503 5.5.1 No valid recipients")
            return txn
        txn.via = "BDAT"
        txn.bdat_lines.append(text)
        if match[2] is None:
            refusal = self.chunk_reply(txn, chunk) if self.chunk_reply else None
            if refusal is not None:
                self._refuse_bdat(peer, refusal)
                return None
            txn.chunks.append(chunk)
            txn.content += chunk
            self._answer(peer, f"250 2.0.0 {len(chunk)} octets received")
            return txn
        txn.chunks.append(chunk)
        txn.content += chunk
        self._finish(peer, txn)
        return None

    def _finish(self, peer: Peer, txn: Received) -> None:
        self.transactions.append(txn)
        policy = self.final_reply or (lambda _txn, _rcpt: "250 2.0.0 Message accepted")
        if not self.lmtp:
            reply = policy(txn, None)
            txn.final.append(reply)
            if txn.via == "BDAT" and not reply.startswith("2"):
                self._refuse_bdat(peer, reply)
                return
            self._answer(peer, reply)
            return
        for rcpt in txn.accepted:
            txn.final.append(policy(txn, rcpt))
            self._answer(peer, txn.final[-1])


def _b64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return b""
