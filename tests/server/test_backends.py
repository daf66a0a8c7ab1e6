"""The shipped backends, through the session contract, on real files and real upstreams.

Sessions are driven directly (``mail``/``rcpt``/``data``) from ``asyncio.run``,
without the network server, so these tests pin the backends alone. Storage
goes to real files under ``tmp_path``; ``Relay`` talks to aiosmtpd over
127.0.0.1. The one thing simulated is a failing write (a full disk in the
middle of a message): a ``mailbox`` subclass whose ``_dump_message`` writes
half the message, flushes it to the file and raises ``ENOSPC`` — the least
intrusion into ``mailbox`` that puts a partial message on disk, so the test
shows the partial bytes really are cleaned up.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import io
import logging
import mailbox
import os
import ssl
import subprocess
import sys
import time
import warnings
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import IO, Any, TypeVar

import pytest

_TESTS = str(Path(__file__).resolve().parents[1])
if _TESTS not in sys.path:  # tests/helpers: the aiosmtpd and certificate helpers
    sys.path.insert(0, _TESTS)

from helpers.aiosmtpd_server import RecordingHandler, Running, aiosmtpd_server  # noqa: E402
from helpers.certs import client_context, server_context  # noqa: E402
from helpers.scripted import Peer, ScriptedServer  # noqa: E402

from mailwire.errors import SMTPError  # noqa: E402
from mailwire.protocol.params import MailOptions, RcptOptions  # noqa: E402
from mailwire.server.envelope import Envelope, SessionInfo  # noqa: E402
from mailwire.server import Maildir, Mbox, Printer, Relay, Sink  # noqa: E402
from mailwire.server.session import Backend, LMTPSession, Session  # noqa: E402

T = TypeVar("T")
PEER = ("192.0.2.7", 40125)
MESSAGE = (
    b"From: Alice <alice@example.com>\r\n"
    b"To: bob@example.org\r\n"
    b"Subject: caf\xc3\xa9\r\n"
    b"\r\n"
    b"Hello Bob,\r\n"
    b".a line that began with a dot\r\n"
    b"From the start of a line\r\n"
    b"\r\n"
    b"8-bit: \xc3\xa9\xe2\x82\xac\r\n"
)


def run(coro: Awaitable[T]) -> T:
    async def main() -> T:
        return await coro

    return asyncio.run(main())


def envelope(
    content: bytes = MESSAGE, mail_from: str = "alice@example.com",
    rcpt_to: tuple[str, ...] = ("bob@example.org",),
) -> Envelope:
    return Envelope(mail_from, MailOptions(), list(rcpt_to), [RcptOptions() for _ in rcpt_to], content)


async def step(result: Awaitable[None] | None) -> None:
    """A session step as the server takes it: a plain one is done already,
    an async one is awaited."""
    if result is not None:
        await result


async def transact(backend: Backend, env: Envelope, info: SessionInfo | None = None) -> Session:
    """One transaction through a new session, as the server would drive it."""
    info = info or SessionInfo(peer=PEER)
    env.session = info
    session = await backend.new_session(info)
    await step(session.mail(env.mail_from, env.mail_options))
    for rcpt, options in zip(env.rcpt_to, env.rcpt_options):
        await step(session.rcpt(rcpt, options))
    try:
        await step(session.data(env))
    finally:
        await step(session.close())
    return session


def deliver(backend: Backend, env: Envelope) -> None:
    run(transact(backend, env))


def refused(backend: Backend, env: Envelope) -> SMTPError:
    with pytest.raises(SMTPError) as caught:
        deliver(backend, env)
    return caught.value


# -- Sink -----------------------------------------------------------------------


def test_sink_counts_messages_and_bytes() -> None:
    sink = Sink()

    async def main() -> None:
        await asyncio.gather(*(transact(sink, envelope(b"x" * n + b"\r\n")) for n in range(10)))

    run(main())
    assert sink.messages == 10
    assert sink.bytes == sum(n + 2 for n in range(10))


def test_sink_shares_one_session() -> None:
    sink = Sink()
    first = run(sink.new_session(SessionInfo(peer=PEER)))
    second = run(sink.new_session(SessionInfo(peer=("198.51.100.1", 1))))
    assert first is second


# -- Printer --------------------------------------------------------------------

PRINTED = (
    "---------- MESSAGE FOLLOWS ----------\n"
    "From: Alice <alice@example.com>\n"
    "To: bob@example.org\n"
    "Subject: café\n"
    "X-Peer: 192.0.2.7\n"
    "\n"
    "Hello Bob,\n"
    ".a line that began with a dot\n"
    "From the start of a line\n"
    "\n"
    "8-bit: é€\n"
    "------------ END MESSAGE ------------\n"
)


def test_printer_output_format() -> None:
    stream = io.StringIO()
    deliver(Printer(stream), envelope())
    assert stream.getvalue() == PRINTED


def test_printer_matches_cpython_debugging_server_in_decode_data_mode() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        smtpd = pytest.importorskip("smtpd")  # removed in Python 3.12
    content = MESSAGE + b"trailing\r\nno newline"
    # smtpd's channel split the data on CRLF, unstuffed dots and joined with
    # LF; decode_data=True decoded as UTF-8 and passed no option keywords.
    decoded = content.decode("utf-8").replace("\r\n", "\n")
    server = object.__new__(smtpd.DebuggingServer)  # no __init__: no socket
    expected = io.StringIO()
    with contextlib.redirect_stdout(expected):
        server.process_message(PEER, "alice@example.com", ["bob@example.org"], decoded)
    ours = io.StringIO()
    deliver(Printer(ours), envelope(content))
    assert ours.getvalue() == expected.getvalue()


def test_printer_without_a_header_end_prints_no_peer_and_replaces_bad_utf8() -> None:
    stream = io.StringIO()
    deliver(Printer(stream), envelope(b"Subject: only headers\r\nX-Bad: \xff\xfe\r\n"))
    assert stream.getvalue() == (
        "---------- MESSAGE FOLLOWS ----------\n"
        "Subject: only headers\n"
        "X-Bad: \ufffd\ufffd\n"
        "------------ END MESSAGE ------------\n"
    )


def test_printer_defaults_to_the_current_stdout_and_names_a_unix_peer() -> None:
    printer = Printer()
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured):
        run(transact(printer, envelope(b"A: b\r\n\r\nbody\r\n"), SessionInfo(peer="/run/mail.sock")))
    assert "X-Peer: /run/mail.sock\n\nbody\n" in captured.getvalue()


def test_printer_never_interleaves_concurrent_messages() -> None:
    stream = io.StringIO()
    printer = Printer(stream)

    async def main() -> None:
        await asyncio.gather(*(
            transact(printer, envelope(f"N: {n}\r\n\r\nbody {n}\r\n".encode())) for n in range(20)
        ))

    run(main())
    blocks = stream.getvalue().split("---------- MESSAGE FOLLOWS ----------\n")[1:]
    assert len(blocks) == 20
    for block in blocks:
        n = block.split("\n")[0].removeprefix("N: ")
        assert block == f"N: {n}\nX-Peer: 192.0.2.7\n\nbody {n}\n------------ END MESSAGE ------------\n"


# -- simulated write failure ----------------------------------------------------------


class _HalfThenFull:
    """A file that takes half of the first write, flushes it to disk, then fails."""

    def __init__(self, target: IO[bytes], error: BaseException) -> None:
        self._target = target
        self._error = error

    def write(self, data: bytes) -> int:
        self._target.write(data[: len(data) // 2])
        self._target.flush()
        raise self._error

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target, name)


def _failing(base: type[Any], error: Callable[[], BaseException]) -> type[Any]:
    class Failing(base):  # type: ignore[misc]
        def _dump_message(self, message: Any, target: IO[bytes], mangle_from_: bool = False) -> None:
            super()._dump_message(message, _HalfThenFull(target, error()), mangle_from_)

    return Failing


def disk_full() -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


# -- Maildir --------------------------------------------------------------------------


def stored(path: Path) -> list[bytes]:
    return sorted((path / "new" / name).read_bytes() for name in os.listdir(path / "new"))


def test_maildir_stores_the_message_byte_exact_after_a_return_path(tmp_path: Path) -> None:
    box = tmp_path / "Maildir"
    deliver(Maildir(box), envelope())
    assert stored(box) == [b"Return-Path: <alice@example.com>\r\n" + MESSAGE]
    assert os.listdir(box / "tmp") == [] and os.listdir(box / "cur") == []
    [message] = mailbox.Maildir(box, create=False)
    assert message["Return-Path"] == "<alice@example.com>"


def test_maildir_null_sender_and_lf_content(tmp_path: Path) -> None:
    box = tmp_path / "Maildir"
    deliver(Maildir(box), envelope(b"Subject: lf\n\nbody\n", mail_from=""))
    assert stored(box) == [b"Return-Path: <>\nSubject: lf\n\nbody\n"]


def test_maildir_create_false_needs_an_existing_maildir(tmp_path: Path) -> None:
    with pytest.raises(mailbox.NoSuchMailboxError):
        Maildir(tmp_path / "missing", create=False)


def test_maildir_concurrent_deliveries_are_all_stored(tmp_path: Path) -> None:
    box = tmp_path / "Maildir"
    handler = Maildir(box)
    contents = [b"Message-ID: <%d@x>\r\n\r\n" % n + b"line\r\n" * n for n in range(60)]

    async def main() -> None:
        await asyncio.gather(*(transact(handler, envelope(c)) for c in contents))

    run(main())
    assert stored(box) == sorted(b"Return-Path: <alice@example.com>\r\n" + c for c in contents)
    assert os.listdir(box / "tmp") == []


def test_maildir_failure_mid_write_leaves_no_message(tmp_path: Path) -> None:
    class Failing(Maildir):
        mailbox_class = _failing(mailbox.Maildir, disk_full)

    box = tmp_path / "Maildir"
    err = refused(Failing(box), envelope())
    assert (err.code, str(err.enhanced)) == (452, "4.3.1")
    assert os.listdir(box / "new") == [] and os.listdir(box / "tmp") == []
    deliver(Maildir(box), envelope())  # the mailbox is still usable
    assert len(stored(box)) == 1


def test_maildir_other_failures_reach_the_server_and_leave_nothing(tmp_path: Path) -> None:
    class Failing(Maildir):
        mailbox_class = _failing(mailbox.Maildir, lambda: RuntimeError("boom"))

    box = tmp_path / "Maildir"
    with pytest.raises(RuntimeError):
        deliver(Failing(box), envelope())
    assert os.listdir(box / "new") == [] and os.listdir(box / "tmp") == []


def test_maildir_retries_a_name_clash(tmp_path: Path) -> None:
    clashes: list[int] = []

    class Clashing(mailbox.Maildir):
        def _create_tmp(self) -> Any:
            if not clashes:
                clashes.append(1)
                raise mailbox.ExternalClashError("Name clash prevented file creation")
            return super()._create_tmp()  # type: ignore[misc]

    class Handler(Maildir):
        mailbox_class = Clashing

    box = tmp_path / "Maildir"
    deliver(Handler(box), envelope())
    assert clashes == [1] and len(stored(box)) == 1


# -- Mbox -----------------------------------------------------------------------------


def read_mbox(path: Path) -> list[bytes]:
    box = mailbox.mbox(path, create=False)
    try:
        return [box.get_bytes(key) for key in box.keys()]
    finally:
        box.close()


def as_mbox(content: bytes, sender: str = "alice@example.com") -> bytes:
    """What a message looks like in an mbox, without its From_ line."""
    body = content.replace(b"\r\n", b"\n").replace(b"\nFrom ", b"\n>From ")
    return f"Return-Path: <{sender}>\n".encode() + body


def test_mbox_stores_a_message(tmp_path: Path) -> None:
    path = tmp_path / "mbox"
    handler = Mbox(path)
    deliver(handler, envelope())
    deliver(handler, envelope(b"Subject: two\r\n\r\nsecond\r\n", mail_from=""))
    handler.close()
    raw = path.read_bytes()
    assert raw.startswith(b"From alice@example.com ")
    assert b"\nFrom MAILER-DAEMON " in raw
    assert b"\r" not in raw and b"\n>From the start of a line\n" in raw
    assert read_mbox(path) == [as_mbox(MESSAGE), as_mbox(b"Subject: two\r\n\r\nsecond\r\n", "")]
    assert not os.path.exists(str(path) + ".lock")


def test_mbox_concurrent_deliveries_from_two_handlers_are_all_intact(tmp_path: Path) -> None:
    path = tmp_path / "mbox"
    handlers = [Mbox(path), Mbox(path)]  # one file, two objects: only the dot-lock separates them
    contents = [b"Message-ID: <%d@x>\r\n\r\n" % n + b"line\r\n" * n for n in range(40)]

    async def main() -> None:
        await asyncio.gather(*(
            transact(handlers[n % 2], envelope(c)) for n, c in enumerate(contents)
        ))

    run(main())
    for handler in handlers:
        handler.close()
    assert sorted(read_mbox(path)) == sorted(as_mbox(c) for c in contents)


def _one_message_mbox(path: Path) -> Mbox:
    handler = Mbox(path)
    deliver(handler, envelope(b"Subject: first\r\n\r\nkept\r\n"))
    return handler


def _failing_on(path: Path, monkeypatch: pytest.MonkeyPatch, name: str, fail: Callable[..., Any]) -> None:
    """Make ``os.<name>`` misbehave (``fail(real, fd, *args)``) for descriptors of ``path``'s file."""
    real = getattr(os, name)
    target = os.stat(path).st_ino

    def spy(fd: int, *args: Any) -> Any:
        if os.fstat(fd).st_ino == target:
            return fail(real, fd, *args)
        return real(fd, *args)

    monkeypatch.setattr(os, name, spy)


def test_mbox_failure_mid_write_leaves_the_file_unchanged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "mbox"
    _one_message_mbox(path).close()
    before = path.read_bytes()

    def half_then_full(real: Callable[..., int], fd: int, data: Any) -> int:
        if len(data) > 1:
            return int(real(fd, data[:len(data) // 2]))  # a short write, then the disk is full
        raise disk_full()

    handler = Mbox(path)
    with monkeypatch.context() as patched:
        _failing_on(path, patched, "write", half_then_full)
        err = refused(handler, envelope())
    assert (err.code, str(err.enhanced)) == (452, "4.3.1")
    assert path.read_bytes() == before
    assert not os.path.exists(str(path) + ".lock")
    deliver(Mbox(path), envelope())
    assert len(read_mbox(path)) == 2


def test_mbox_failed_flush_is_rolled_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "mbox"
    _one_message_mbox(path).close()
    before = path.read_bytes()
    handler = Mbox(path)
    with monkeypatch.context() as patched:
        fsyncs: list[int] = []

        def fail_first(real: Callable[..., None], fd: int) -> None:
            fsyncs.append(fd)
            if len(fsyncs) == 1:  # the append's fsync fails; the roll-back's goes through
                raise OSError(errno.EIO, "fsync failed")
            real(fd)

        _failing_on(path, patched, "fsync", fail_first)
        with pytest.raises(OSError):
            deliver(handler, envelope())
    assert path.read_bytes() == before
    assert not os.path.exists(str(path) + ".lock")


def test_mbox_busy_lock_is_a_transient_refusal(tmp_path: Path) -> None:
    path = tmp_path / "mbox"
    handler = _one_message_mbox(path)
    handler.lock_timeout = 0.2
    other = mailbox.mbox(path)  # another mail program holding the dot-lock
    other.lock()
    try:
        err = refused(handler, envelope())
    finally:
        other.unlock()
        other.close()
    assert (err.code, str(err.enhanced)) == (450, "4.2.0")
    deliver(handler, envelope())
    assert len(read_mbox(path)) == 2


def test_mbox_follows_a_file_replaced_by_another_program(tmp_path: Path) -> None:
    path = tmp_path / "mbox"
    handler = _one_message_mbox(path)
    # A mail reader expunges by writing a new file and renaming it over the old one.
    replacement = tmp_path / "mbox.new"
    replacement.write_bytes(b"")
    os.replace(replacement, path)
    deliver(handler, envelope())
    handler.close()
    assert read_mbox(path) == [as_mbox(MESSAGE)]


# -- Relay ----------------------------------------------------------------------------


class Upstream(RecordingHandler):
    """aiosmtpd's handler, refusing chosen senders as well as recipients."""

    def __init__(self, **kwargs: Any) -> None:
        self.refuse_mail: dict[str, str] = kwargs.pop("refuse_mail", {})
        self.peers: set[Any] = set()  # one per connection that said MAIL
        super().__init__(**kwargs)

    async def handle_MAIL(
        self, server: Any, session: Any, env: Any, address: str, mail_options: list[str]
    ) -> str:
        self.peers.add(session.peer)
        refusal = self.refuse_mail.get(address)
        if refusal is not None:
            return refusal
        env.mail_from = address
        env.mail_options.extend(mail_options)
        return "250 OK"


@pytest.fixture
def upstream() -> Iterator[Running]:
    handler = Upstream(
        refuse_mail={"spammer@example.com": "553 5.7.1 Sender rejected"},
        refuse_rcpt={
            "nobody@example.org": "550 5.1.1 No such user",
            "full@example.org": "452 4.2.2 Mailbox full",
        },
    )
    with aiosmtpd_server(handler=handler) as running:
        yield running


def relay_to(running: Running, **kwargs: Any) -> Relay:
    host, port = running.address
    kwargs.setdefault("tls", "none")
    return Relay(host, port, timeout=10, **kwargs)


def test_relay_forwards_byte_exact(upstream: Running) -> None:
    deliver(relay_to(upstream), envelope(rcpt_to=("bob@example.org", "carol@example.org")))
    [got] = upstream.handler.envelopes
    assert got.mail_from == "alice@example.com"
    assert got.rcpt_tos == ["bob@example.org", "carol@example.org"]
    assert got.original_content == MESSAGE


def test_relay_over_starttls_with_auth(tmp_path: Path) -> None:
    import trustme

    ca = trustme.CA()
    with aiosmtpd_server(starttls=server_context(ca), users={"relay": "s3cret"}) as running:
        relay = relay_to(running, tls="starttls", ssl_context=client_context(ca), auth=("relay", "s3cret"))
        deliver(relay, envelope())
        [got] = running.handler.envelopes
    assert got.original_content == MESSAGE


def test_relay_auth_over_plaintext_when_allowed() -> None:
    with aiosmtpd_server(users={"relay": "s3cret"}, auth_require_tls=False) as running:
        relay = relay_to(running, auth=("relay", "s3cret"), allow_plaintext_auth=True)
        deliver(relay, envelope())
        assert [e.original_content for e in running.handler.envelopes] == [MESSAGE]
        bad = relay_to(running, auth=("relay", "wrong"), allow_plaintext_auth=True)
        err = refused(bad, envelope())
    assert (err.code, str(err.enhanced)) == (451, "4.7.0")
    assert "535" in err.text


def test_relay_all_recipients_refused_carries_the_upstream_reply(upstream: Running) -> None:
    err = refused(relay_to(upstream), envelope(rcpt_to=("nobody@example.org",)))
    assert (err.code, str(err.enhanced), err.text) == (550, "5.1.1", "upstream: No such user")
    assert upstream.handler.envelopes == []


def test_relay_forward_prefers_a_transient_refusal_when_all_are_refused(upstream: Running) -> None:
    # The whole-envelope path (LMTP, BINARYMIME) has one reply for several refusals.
    with pytest.raises(SMTPError) as caught:
        relay_to(upstream).forward(envelope(rcpt_to=("nobody@example.org", "full@example.org")))
    err = caught.value
    assert (err.code, str(err.enhanced), err.text) == (452, "4.2.2", "upstream: Mailbox full")


def test_relay_sender_refused(upstream: Running) -> None:
    err = refused(relay_to(upstream), envelope(mail_from="spammer@example.com"))
    assert (err.code, str(err.enhanced), err.text) == (553, "5.7.1", "upstream: Sender rejected")


def test_relay_data_refused(upstream: Running) -> None:
    upstream.handler.data_reply = "554 5.7.1 Message rejected as spam"
    err = refused(relay_to(upstream), envelope())
    assert (err.code, str(err.enhanced), err.text) == (554, "5.7.1", "upstream: Message rejected as spam")


def test_relay_gives_each_recipient_the_upstreams_reply_as_it_comes(upstream: Running) -> None:
    """SMTP: each RCPT is relayed when the sender gives it, so a recipient the
    upstream refuses is refused to the sender, with the upstream's reply, and
    the message goes to the others."""
    async def main() -> list[SMTPError | None]:
        session = await relay_to(upstream).new_session(SessionInfo(peer=PEER))
        env = envelope(rcpt_to=("bob@example.org",))
        outcomes: list[SMTPError | None] = []
        try:
            await session.mail(env.mail_from, env.mail_options)
            for rcpt in ("bob@example.org", "nobody@example.org", "full@example.org"):
                try:
                    await session.rcpt(rcpt, RcptOptions())
                    outcomes.append(None)
                except SMTPError as err:
                    outcomes.append(err)
            await session.data(env)
        finally:
            await session.close()
        return outcomes

    ok, gone, full = run(main())
    assert ok is None
    assert gone is not None and (gone.code, str(gone.enhanced), gone.text) == (550, "5.1.1", "upstream: No such user")
    assert full is not None and (full.code, str(full.enhanced), full.text) == (452, "4.2.2", "upstream: Mailbox full")
    [got] = upstream.handler.envelopes
    assert got.rcpt_tos == ["bob@example.org"] and got.original_content == MESSAGE


def test_relay_over_smtp_reports_each_upstream_refusal_to_the_sender(
    upstream: Running, server_factory: Callable[..., Any],
) -> None:
    """End to end: stdlib smtplib -> mailwire's server with Relay -> aiosmtpd.
    sendmail() returns the recipients the upstream refused, with its replies."""
    import smtplib

    server = server_factory(relay_to(upstream))
    with smtplib.SMTP(*server.address, timeout=10) as client:
        refused_rcpts = client.sendmail(
            "alice@example.com", ["bob@example.org", "nobody@example.org", "full@example.org"], MESSAGE,
        )
        with pytest.raises(smtplib.SMTPSenderRefused) as sender:
            client.sendmail("spammer@example.com", ["bob@example.org"], MESSAGE)
    assert refused_rcpts == {
        "nobody@example.org": (550, b"5.1.1 upstream: No such user"),
        "full@example.org": (452, b"4.2.2 upstream: Mailbox full"),
    }
    assert sender.value.smtp_code == 553
    [got] = upstream.handler.envelopes
    assert got.rcpt_tos == ["bob@example.org"] and got.original_content == MESSAGE


def test_relay_resets_the_upstream_after_it_refuses_data() -> None:
    def script(peer: Peer) -> None:
        peer.reply("220 scripted ESMTP")
        peer.recv_line()
        peer.reply("250-scripted", "250 8BITMIME")
        for data_reply in ("554 5.7.1 Not now", "250 OK"):
            assert peer.recv_line().startswith(b"MAIL FROM:")
            peer.reply("250 OK")
            assert peer.recv_line().startswith(b"RCPT TO:")
            peer.reply("250 OK")
            assert peer.recv_line() == b"DATA\r\n"
            if data_reply.startswith("554"):
                peer.reply(data_reply)  # DATA itself refused: the transaction is still open
                assert peer.recv_line() == b"RSET\r\n"
                peer.reply("250 OK")
            else:
                peer.reply("354 go ahead")
                peer.recv_until(b"\r\n.\r\n")
                peer.reply(data_reply)
        assert peer.recv_line() == b"QUIT\r\n"
        peer.reply("221 2.0.0 Bye")

    async def main() -> SMTPError:
        session = await Relay(*server.address, tls="none", timeout=5).new_session(SessionInfo(peer=PEER))
        try:
            env = envelope()
            await session.mail(env.mail_from, env.mail_options)
            await session.rcpt("bob@example.org", RcptOptions())
            with pytest.raises(SMTPError) as refusal:
                await session.data(env)
            await session.mail(env.mail_from, env.mail_options)
            await session.rcpt("bob@example.org", RcptOptions())
            await session.data(env)
        finally:
            await session.close()
        return refusal.value

    with ScriptedServer(script) as server:
        err = run(main())
    assert (err.code, str(err.enhanced), err.text) == (554, "5.7.1", "upstream: Not now")


def test_relay_uses_one_upstream_connection_per_sender_session(upstream: Running) -> None:
    async def main() -> None:
        session = await relay_to(upstream).new_session(SessionInfo(peer=PEER))
        try:
            for i in range(3):
                env = envelope(content=MESSAGE + b"%d\r\n" % i)
                await session.mail(env.mail_from, env.mail_options)
                await session.rcpt("bob@example.org", RcptOptions())
                await session.data(env)
            await session.mail("alice@example.com", MailOptions())  # abandoned: RSET upstream
            await session.reset()
        finally:
            await session.close()

    run(main())
    assert [e.original_content for e in upstream.handler.envelopes] == [MESSAGE + b"%d\r\n" % i for i in range(3)]
    assert len(upstream.handler.peers) == 1


def test_relay_lmtp_gives_each_recipient_its_upstream_reply(upstream: Running) -> None:
    async def main() -> list[SMTPError | None]:
        session = await relay_to(upstream).new_session(SessionInfo(peer=PEER, lmtp=True))
        assert isinstance(session, LMTPSession)
        env = envelope(rcpt_to=("bob@example.org", "nobody@example.org", "full@example.org"))
        return list(await session.deliver(env))

    ok, gone, full = run(main())
    assert ok is None
    assert gone is not None and (gone.code, str(gone.enhanced), gone.text) == (550, "5.1.1", "upstream: No such user")
    assert full is not None and (full.code, str(full.enhanced)) == (452, "4.2.2")
    assert [e.rcpt_tos for e in upstream.handler.envelopes] == [["bob@example.org"]]


def test_relay_lmtp_with_the_data_refused_refuses_every_recipient(upstream: Running) -> None:
    upstream.handler.data_reply = "554 5.7.1 Message rejected as spam"

    async def main() -> list[SMTPError | None]:
        session = await relay_to(upstream).new_session(SessionInfo(peer=PEER, lmtp=True))
        assert isinstance(session, LMTPSession)
        return list(await session.deliver(envelope(rcpt_to=("bob@example.org", "nobody@example.org"))))

    outcomes = run(main())
    assert [(e.code, str(e.enhanced)) for e in outcomes if e is not None] == [(554, "5.7.1"), (550, "5.1.1")]


def test_relay_unreachable_upstream_is_451_4_4_1(closed_port: int) -> None:
    relay = Relay("127.0.0.1", closed_port, tls="none", timeout=5)
    err = refused(relay, envelope())
    assert (err.code, str(err.enhanced)) == (451, "4.4.1")
    assert err.text.startswith("upstream unreachable: 127.0.0.1:")

    async def lmtp() -> list[SMTPError | None]:
        session = await relay.new_session(SessionInfo(peer=PEER, lmtp=True))
        assert isinstance(session, LMTPSession)
        return list(await session.deliver(envelope(rcpt_to=("a@x.example", "b@x.example"))))

    assert [e.code if e else None for e in run(lmtp())] == [451, 451]


def test_relay_refusing_greeting_is_reported() -> None:
    # A 421 greeting means the upstream is closing; ours is not, so it says 451.
    def greet(text: str) -> Callable[[Peer], None]:
        def script(peer: Peer) -> None:
            peer.reply(text)
            if peer.recv_line():  # RFC 5321 3.1: the client may still QUIT
                peer.reply("221 2.0.0 Bye")
            peer.wait_closed()

        return script

    for greeting, expected in [
        ("554 5.3.2 Not accepting mail", (554, "5.3.2", "upstream: Not accepting mail")),
        ("421 4.3.2 Shutting down", (451, "4.3.2", "upstream: Shutting down")),
        ("554 no enhanced code here", (554, "None", "upstream: no enhanced code here")),
    ]:
        with ScriptedServer(greet(greeting), strict=False) as server:
            err = refused(Relay(*server.address, tls="none", timeout=5), envelope())
        assert (err.code, str(err.enhanced), err.text) == expected


def test_relay_connection_lost_after_the_content_is_451_4_4_2() -> None:
    def script(peer: Peer) -> None:
        peer.reply("220 scripted ESMTP")
        peer.recv_line()
        peer.reply("250-scripted", "250 8BITMIME")
        for _ in range(3):  # MAIL, RCPT, DATA, one at a time
            peer.recv_line()
            peer.reply("250 OK" if _ < 2 else "354 go ahead")
        peer.recv_until(b"\r\n.\r\n")
        # ... and the connection drops before the reply to the end of data.

    with ScriptedServer(script) as server:
        err = refused(Relay(*server.address, tls="none", timeout=5), envelope())
    assert (err.code, str(err.enhanced)) == (451, "4.4.2")
    assert err.text.startswith("upstream connection lost")


def test_relay_refuses_8bit_content_for_an_upstream_without_8bitmime() -> None:
    def script(peer: Peer) -> None:
        peer.reply("220 scripted ESMTP")
        peer.recv_line()
        peer.reply("250 scripted")  # EHLO with no extensions at all
        assert peer.recv_line().startswith(b"MAIL FROM:")
        peer.reply("250 OK")
        assert peer.recv_line().startswith(b"RCPT TO:")
        peer.reply("250 OK")
        assert peer.recv_line() == b"RSET\r\n"  # no DATA: the content is never sent
        peer.reply("250 OK")
        assert peer.recv_line() == b"QUIT\r\n"
        peer.reply("221 2.0.0 Bye")

    with ScriptedServer(script) as server:
        err = refused(Relay(*server.address, tls="none", timeout=5), envelope())
    assert (err.code, str(err.enhanced)) == (554, "5.6.3")


@pytest.mark.parametrize(("options", "refusal"), [
    (MailOptions(smtputf8=True), (554, "5.3.3")),  # RFC 6531 3.4: no SMTPUTF8 upstream
    (MailOptions(requiretls=True), (550, "5.7.30")),  # RFC 8689 4.2: no TLS, no REQUIRETLS
], ids=["smtputf8", "requiretls"])
def test_relay_refuses_a_sender_whose_mail_parameters_the_upstream_cannot_honour(
    options: MailOptions, refusal: tuple[int, str],
) -> None:
    """The sender's MAIL parameters are checked against what the upstream
    offers before any MAIL goes up: the refusal is the sender's reply, and
    the upstream sees no transaction."""
    def script(peer: Peer) -> None:
        peer.reply("220 scripted ESMTP")
        peer.recv_line()
        peer.reply("250-scripted", "250 8BITMIME")  # neither SMTPUTF8 nor REQUIRETLS, no TLS
        assert peer.recv_line() == b"QUIT\r\n"  # no MAIL FROM ever came
        peer.reply("221 2.0.0 Bye")

    async def main() -> SMTPError:
        session = await Relay(*server.address, tls="none", timeout=5).new_session(SessionInfo(peer=PEER))
        try:
            with pytest.raises(SMTPError) as caught:
                await session.mail("alice@example.com", options)
        finally:
            await session.close()
        return caught.value

    with ScriptedServer(script) as server:
        err = run(main())
    assert (err.code, str(err.enhanced)) == refusal


def test_relay_requiring_starttls_from_an_upstream_without_it(upstream: Running) -> None:
    err = refused(relay_to(upstream, tls="starttls"), envelope())
    assert (err.code, str(err.enhanced)) == (451, "4.7.5")
    assert upstream.handler.envelopes == []


def test_relay_refuses_bad_client_options_at_construction() -> None:
    with pytest.raises(ValueError):
        Relay("127.0.0.1", 25, tls="sometimes")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Relay("127.0.0.1", 25, no_such_option=True)


def test_relay_default_context_verifies() -> None:
    relay = Relay("127.0.0.1", 25)
    assert relay.ssl_context is not None and relay.ssl_context.verify_mode == ssl.CERT_REQUIRED


def test_mbox_removes_a_stale_dot_lock_nobody_holds(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # A writer killed while appending (a worker's SIGKILL) leaves its dot-lock behind.
    path = tmp_path / "mbox"
    handler = _one_message_mbox(path)
    handler.lock_timeout = 0.2
    lock = Path(str(path) + ".lock")
    lock.write_bytes(b"")
    young = refused(handler, envelope())
    assert (young.code, str(young.enhanced)) == (450, "4.2.0")  # not stale yet: a live writer's, maybe
    old = time.time() - handler.stale_lock - 1
    os.utime(lock, (old, old))
    with caplog.at_level(logging.WARNING, logger="mailwire.server.backends.mbox"):
        deliver(handler, envelope())
    assert len(read_mbox(path)) == 2
    assert not lock.exists()
    assert "removed a dot-lock" in caplog.text


def test_mbox_keeps_an_old_dot_lock_while_another_process_holds_the_file(tmp_path: Path) -> None:
    path = tmp_path / "mbox"
    handler = _one_message_mbox(path)
    handler.lock_timeout = 0.2
    lock = Path(str(path) + ".lock")
    lock.write_bytes(b"")
    old = time.time() - handler.stale_lock - 1
    os.utime(lock, (old, old))
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import fcntl, sys, time; f = open(sys.argv[1], 'rb+'); fcntl.lockf(f, fcntl.LOCK_EX); "
         "print('held', flush=True); time.sleep(30)", str(path)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        err = refused(handler, envelope())
    finally:
        holder.kill()
        holder.wait(10)
    assert (err.code, str(err.enhanced)) == (450, "4.2.0")
    assert lock.exists()
