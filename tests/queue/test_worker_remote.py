"""The worker handing mail on: to an LMTP server (mailwire's own, per-recipient
replies), to a relay (Postfix's smtp-sink; mailwire's server scripted to
answer 4xx then 250, and 5xx): temporary failures retried for the failed
recipients only, permanent ones bounced (an RFC 3464 report published into
the queue, read back with the email package), the null sender never
bounced, NOTIFY=NEVER honoured, and no recipient delivered twice."""

from __future__ import annotations

import email
import email.policy
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pytest

from mailwire.errors import SMTPError
from mailwire.protocol.params import MailOptions, RcptOptions
from mailwire.queue import QueueEntry
from mailwire.queue.deliver import LMTPDeliverer, RelayDeliverer
from mailwire.queue.worker import RetryPolicy, Worker
from mailwire.server import SMTPServer
from mailwire.server.envelope import Envelope, SessionInfo
from mailwire.server.session import BaseSession, Session

from helpers.redis_server import RedisServer
from helpers.smtp_sink import Sink, smtp_sink
from worker_helpers import with_broker, GROUP, make_entry, run_until

pytest.importorskip("redis")
from mailwire.queue.redis_broker import RedisBroker  # noqa: E402

FAST = RetryPolicy(first_delay=0.05, max_delay=0.2, max_attempts=4)


class Scripted:
    """mailwire's server as a scripted peer: ``temp*`` refused with 451 the
    first ``tempfails`` times, ``bad*`` always with 550; the rest delivered
    (``delivered``: each recipient with the message it got)."""

    def __init__(self, tempfails: int = 1, lmtp: bool = False) -> None:
        self.tempfails = tempfails
        self.lmtp = lmtp
        self.seen: dict[str, int] = {}
        self.delivered: list[tuple[str, bytes]] = []

    async def new_session(self, info: SessionInfo) -> Session:
        return _ScriptedSession(info, self)

    def outcome(self, rcpt: str) -> SMTPError | None:
        self.seen[rcpt] = self.seen.get(rcpt, 0) + 1
        if rcpt.startswith("bad"):
            return SMTPError(550, "5.1.1", "No such user")
        if rcpt.startswith("temp") and self.seen[rcpt] <= self.tempfails:
            return SMTPError(451, "4.2.0", "Try again later")
        return None


class _ScriptedSession(BaseSession):
    def __init__(self, info: SessionInfo, script: Scripted) -> None:
        super().__init__(info)
        self.script = script

    async def rcpt(self, address: str, options: RcptOptions) -> None:
        if not self.script.lmtp:
            refusal = self.script.outcome(address)
            if refusal is not None:
                raise refusal

    async def data(self, envelope: Envelope) -> None:
        self.script.delivered += [(r, envelope.content) for r in envelope.rcpt_to]

    async def deliver(self, envelope: Envelope) -> Sequence[SMTPError | None]:  # LMTP
        outcomes = [self.script.outcome(r) for r in envelope.rcpt_to]
        self.script.delivered += [(r, envelope.content) for r, o in zip(envelope.rcpt_to, outcomes) if o is None]
        return outcomes


def _delivered_to(script: Scripted, rcpt: str) -> list[bytes]:
    return [content for r, content in script.delivered if r == rcpt]


@pytest.mark.parametrize("lmtp", [False, True], ids=["relay", "lmtp"])
def test_temporary_failures_retried_for_those_recipients_only_permanent_ones_bounced(
    redis_server: RedisServer, lmtp: bool, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "mailwire.queue")
    script = Scripted(tempfails=2, lmtp=lmtp)
    entry = make_entry(7, rcpts=("ok@example.com", "temp@example.com", "bad@example.com"),
                       mail_options=MailOptions(envid="ENV-7"),
                       rcpt_options=[RcptOptions(), RcptOptions(), RcptOptions(orcpt=("rfc822", "Bad@example.com"))])

    async def test(broker: RedisBroker) -> None:
        server = SMTPServer(script, hostname="mx.test", lmtp=lmtp)
        await server.start("127.0.0.1", 0)
        try:
            kind = LMTPDeliverer if lmtp else RelayDeliverer
            deliverer = kind.to("127.0.0.1", server.port, size=2, timeout=5, tls="none")
            await broker.publish(entry)
            worker = Worker(broker, deliverer, retry=FAST, block=0.05)
            # The bounce goes through the queue like any mail: this worker relays it to the sender.
            await run_until(worker, lambda: worker.counts["delivered"] == 3)
            await deliverer.close()
        finally:
            await server.stop(grace=1.0)
        assert worker.counts["retry"] == 2 and worker.counts["bounced"] == 1
        assert (await broker.stats(GROUP)).length == 0

    with_broker(redis_server, test)
    [dsn] = _delivered_to(script, "a@example.com")
    report = email.message_from_bytes(dsn, policy=email.policy.default)
    assert report.get_content_type() == "multipart/report"
    assert report.get_param("report-type") == "delivery-status"
    text, status, returned = report.iter_parts()
    assert "bad@example.com" in text.get_content()
    per_message, per_rcpt = status.get_payload()
    assert per_message["Original-Envelope-Id"] == "ENV-7"
    assert per_message["X-Mailwire-Queue-Id"] == entry.queue_id
    assert per_rcpt["Final-Recipient"] == "rfc822; bad@example.com"
    assert per_rcpt["Original-Recipient"] == "rfc822; Bad@example.com"
    assert (per_rcpt["Action"], per_rcpt["Status"]) == ("failed", "5.1.1")
    assert "550 5.1.1 No such user" in per_rcpt["Diagnostic-Code"]
    assert returned.get_content_type() == "text/rfc822-headers"  # RET not FULL: the header only
    assert f"X-Mailwire-Queue-Id: {entry.queue_id}" in returned.get_payload()
    assert report["X-Mailwire-Queue-Id"] != entry.queue_id  # a new message, queued anew
    # Each recipient delivered once; temp@ tried three times, ok@ and bad@ once.
    assert sorted(r for r, _ in script.delivered) == ["a@example.com", "ok@example.com", "temp@example.com"]
    assert script.seen == {"ok@example.com": 1, "temp@example.com": 3, "bad@example.com": 1, "a@example.com": 1}
    for rcpt in ("ok@example.com", "temp@example.com"):
        [content] = _delivered_to(script, rcpt)
        assert f"X-Mailwire-Queue-Id: {entry.queue_id}".encode() in content
        assert b"from client.example ([192.0.2.7])" in content
    messages = [r.getMessage() for r in caplog.records]
    target = "lmtp" if lmtp else "relay"
    assert f"event=retry queue_id={entry.queue_id} target={target} attempt=1 delay=0.05 rcpts=1" \
        ' reason="smtp; 451 4.2.0 Try again later"' in messages
    assert any(m.startswith(f"event=bounced queue_id={entry.queue_id} target={target} attempt=1 rcpts=1 dsn=")
               for m in messages)
    assert f"event=delivered queue_id={entry.queue_id} target={target} attempt=3 rcpts=1" in messages


def test_retries_exhausted_bounce_notify_never_and_the_null_sender_is_dead_lettered(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "mailwire.queue")
    script = Scripted(tempfails=100)
    exhausted = make_entry(8, rcpts=("temp@example.com",), mail_options=MailOptions(ret="FULL"))
    never = make_entry(9, rcpts=("bad@example.com",), rcpt_options=[RcptOptions(notify=())])
    from_null = make_entry(10, rcpts=("bad@example.com",), mail_from="")

    async def test(broker: RedisBroker) -> None:
        server = SMTPServer(script, hostname="mx.test")
        await server.start("127.0.0.1", 0)
        try:
            deliverer = RelayDeliverer.to("127.0.0.1", server.port, timeout=5, tls="none")
            for entry in (exhausted, never, from_null):
                await broker.publish(entry)
            worker = Worker(broker, deliverer, retry=RetryPolicy(first_delay=0.02, max_delay=0.05, max_attempts=3),
                            block=0.05)
            await run_until(worker, lambda: worker.counts["bounced"] == 2 and worker.counts["dead_letter"] == 1
                            and worker.counts["delivered"] == 1)
            await deliverer.close()
        finally:
            await server.stop(grace=1.0)
        [dsn] = _delivered_to(script, "a@example.com")  # the exhausted one only: NOTIFY=NEVER asked for none
        report = email.message_from_bytes(dsn, policy=email.policy.default)
        _text, status, returned = report.iter_parts()
        assert status.get_payload()[1]["Status"] == "5.2.0"  # the last 4.2.0, given up
        assert returned.get_content_type() == "message/rfc822"  # RET=FULL: the whole message
        [(_, dead)] = await broker.client.xrange(broker.dead_stream)
        assert dead[b"id"] == from_null.queue_id.encode() and b"null sender" in dead[b"dead_reason"]

    with_broker(redis_server, test)
    assert script.seen["temp@example.com"] == 3
    assert [r for r, _ in script.delivered] == ["a@example.com"]


def test_relay_to_smtp_sink_and_a_repeat_is_not_relayed_again(redis_server: RedisServer) -> None:
    entry = make_entry(11, rcpts=("x@example.com", "y@example.com"))
    with tempfile.TemporaryDirectory() as where:  # in /tmp: smtp-sink runs as nobody
        Path(where).chmod(0o755)
        dump = Path(where) / "sink"
        dump.mkdir()
        with smtp_sink(dump_dir=dump) as sink:
            dumped = _relay_twice(redis_server, sink, entry)
    assert dumped.count(f"X-Mailwire-Queue-Id: {entry.queue_id}") == 1
    assert "X-Rcpt-Args: <x@example.com>" in dumped and "X-Rcpt-Args: <y@example.com>" in dumped


def _relay_twice(redis_server: RedisServer, sink: Sink, entry: QueueEntry) -> str:
    async def test(broker: RedisBroker) -> None:
        deliverer = RelayDeliverer.to(sink.host, sink.port, timeout=5, tls="none")
        worker = Worker(broker, deliverer, block=0.05)
        await broker.publish(entry)
        await run_until(worker, lambda: worker.counts["delivered"] == 1)
        await broker.publish(entry)  # as after a crash between the delivery and the ack
        await run_until(worker, lambda: worker.counts["duplicate"] == 1)
        await deliverer.close()
        assert (await broker.stats(GROUP)).length == 0

    with_broker(redis_server, test)
    return sink.dumped()  # smtp-sink wrote it before its 250


def test_lmtp_over_a_unix_socket(redis_server: RedisServer) -> None:
    script = Scripted(lmtp=True)
    entry = make_entry(12, rcpts=("u@example.com", "v@example.com"))
    with tempfile.TemporaryDirectory() as where:  # short: a socket path holds ~107 octets
        path = str(Path(where) / "lmtp.sock")

        async def test(broker: RedisBroker) -> None:
            server = SMTPServer(script, hostname="mx.test", lmtp=True)
            await server.start_unix(path)
            try:
                deliverer = LMTPDeliverer.to(path, None, tls="none", timeout=5)
                await broker.publish(entry)
                worker = Worker(broker, deliverer, block=0.05)
                await run_until(worker, lambda: worker.counts["delivered"] == 1)
                await deliverer.close()
            finally:
                await server.stop(grace=1.0)

        with_broker(redis_server, test)
    assert sorted(r for r, _ in script.delivered) == ["u@example.com", "v@example.com"]
