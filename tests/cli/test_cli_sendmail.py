"""``mailwire sendmail`` run for real: the command as a subprocess, a real server on loopback.

The shapes real programs use are each run as they call it (PHP's ``mail()``:
``sendmail -t -i``; git send-email: ``sendmail -i -f me@x you@y``; cron:
``sendmail -i -FCronDaemon -B8BITMIME -oem user``; mutt: ``-oem -oi --``),
each flag is checked on what the server received, and each failure on its
``sysexits.h`` exit code and one line on stderr. The message rules
(``sendmail_message``) are also checked alone, on bytes, with the input cut
at every place.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from email import message_from_bytes
from email.policy import default as default_policy
from pathlib import Path

import pytest

from mailwire import SMTPError
from mailwire.cli import sendmail as sendmail_cli
from mailwire.cli import serve as serve_cli
from mailwire.cli.serve_run import Users
from mailwire.cli.sendmail_message import DataError, Input, complete, recipients
from mailwire.protocol.params import RcptOptions
from mailwire.server.envelope import Envelope, SessionInfo
from mailwire.server.session import BaseSession, Session
from mailwire.testing import ServerThread, run_server

SENDMAIL = [sys.executable, "-m", "mailwire", "sendmail"]
ME, YOU, CC, HIDDEN = "me@example.org", "you@example.net", "cc@example.net", "hidden@example.net"


def sendmail(*args: str, input: bytes | None = b"", server: ServerThread | None = None,
             env: dict[str, str] | None = None, command: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    """``mailwire sendmail ARGS`` with ``input`` on stdin (None: stdin closed),
    sending to ``server``; the environment without the user's MAILWIRE_* and NAME."""
    environ = {k: v for k, v in os.environ.items() if k not in sendmail_cli.ENVIRONMENT and k != "NAME"}
    if server is not None:
        environ["MAILWIRE_SMTP"] = f"{server.host}:{server.port}"
    environ.update(env or {})
    close_stdin = input is None
    proc = subprocess.run(
        [*(command or SENDMAIL), *args], input=input, env=environ, capture_output=not close_stdin,
        stdout=subprocess.PIPE if close_stdin else None, stderr=subprocess.PIPE if close_stdin else None,
        stdin=subprocess.DEVNULL if close_stdin else None, timeout=30,
        preexec_fn=(lambda: os.close(0)) if close_stdin else None,
    )
    return subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout.decode(), proc.stderr.decode())


def one_line(text: str) -> str:
    assert "Traceback" not in text
    lines = text.splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def parsed(envelope: Envelope) -> dict[str, str]:
    msg = message_from_bytes(envelope.content, policy=default_policy)
    return {name: str(value) for name, value in msg.items()}


def body(envelope: Envelope) -> bytes:
    return envelope.content.split(b"\r\n\r\n", 1)[1]


PHP_MAIL = (  # what PHP's mail() writes to `sendmail -t -i`: LF line endings, no Date, no Message-ID
    f"To: {YOU}\nSubject: Your password\nX-PHP-Originating-Script: 0:reset.php\n"
    f"From: Shop <{ME}>\nCc: {CC}\nBcc: {HIDDEN}\n\nReset it here:\n.\nhttps://shop.example/reset\n"
).encode()


# -- the shapes real programs use ------------------------------------------------------------------


def test_php_mail_shape_t_i() -> None:
    with run_server() as server:
        done = sendmail("-t", "-i", server=server, input=PHP_MAIL, env={"MAILWIRE_FROM": "www-data@example.org"})
        (envelope,) = server.wait_for(1)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert envelope.mail_from == "www-data@example.org"  # the envelope sender is not taken from From:
    assert envelope.rcpt_to == [YOU, CC, HIDDEN]  # To, Cc, Bcc
    assert b"Bcc" not in envelope.content and HIDDEN.encode() not in envelope.content
    head = parsed(envelope)
    assert head["From"] == f"Shop <{ME}>" and head["Subject"] == "Your password"
    assert "Date" in head and head["Message-ID"].endswith("@example.org>")  # added, as sendmail does
    assert b"\n" not in envelope.content.replace(b"\r\n", b"")  # bare LF made CRLF
    assert body(envelope) == b"Reset it here:\r\n.\r\nhttps://shop.example/reset\r\n"  # -i: the dot is a line


def test_git_send_email_shape_i_f_and_recipients() -> None:
    patch = (f"From: Dev <{ME}>\nTo: {YOU}\nCc: {CC}\nSubject: [PATCH] fix\nDate: Sun, 6 Dec 2026 10:00:00 +0000\n"
             "Message-ID: <20261206.1@example.org>\n\n---\n.\n..leading dots stay\n").encode()
    with run_server() as server:
        done = sendmail("-i", "-f", ME, YOU, CC, server=server, input=patch)
        (envelope,) = server.wait_for(1)
    assert (done.returncode, done.stderr) == (0, "")
    assert envelope.mail_from == ME and envelope.rcpt_to == [YOU, CC]
    head = parsed(envelope)
    assert head["Date"] == "Sun, 06 Dec 2026 10:00:00 +0000" and head["Message-ID"] == "<20261206.1@example.org>"
    assert envelope.content.count(b"Message-ID") == 1 and envelope.content.count(b"Date:") == 1  # kept, not added
    assert body(envelope) == b"---\r\n.\r\n..leading dots stay\r\n"  # not SMTP: no unstuffing


def test_cron_shape_bare_name_full_name_and_ignored_options() -> None:
    with run_server() as server:
        done = sendmail("-i", "-FCronDaemon", "-B8BITMIME", "-oem", "root", server=server,
                        input="Subject: Cron <root@host> backup\n\nsauvegardé\n".encode())
        (envelope,) = server.wait_for(1)
    assert (done.returncode, done.stderr) == (0, "")
    host = envelope.mail_from.partition("@")[2]
    assert host and envelope.rcpt_to == [f"root@{host}"]  # qualified at this host, as sendmail does
    assert parsed(envelope)["From"] == f"CronDaemon <{envelope.mail_from}>"
    assert envelope.mail_options.body == "8BITMIME"
    assert body(envelope) == "sauvegardé\r\n".encode()


def test_mutt_shape_double_dash_ends_options() -> None:
    with run_server() as server:
        done = sendmail("-oem", "-oi", "-f", ME, "--", "-odd@example.net", YOU, server=server,
                        input=b"Subject: s\n\nx\n")
        (envelope,) = server.wait_for(1)
    assert (done.returncode, done.stderr) == (0, "")
    assert envelope.rcpt_to == ["-odd@example.net", YOU]  # after --, an address that looks like an option


# -- each flag ------------------------------------------------------------------------------------------


def test_a_lone_dot_ends_the_message_without_i() -> None:
    with run_server() as server:
        done = sendmail(YOU, server=server, input=b"Subject: s\n\nfirst\n.\nnever sent\n")
        (envelope,) = server.wait_for(1)
    assert done.returncode == 0
    assert body(envelope) == b"first\r\n"
    with run_server() as server:  # -oi is -i
        assert sendmail("-oi", YOU, server=server, input=b"Subject: s\n\nfirst\n.\nsent\n").returncode == 0
        (envelope,) = server.wait_for(1)
    assert body(envelope) == b"first\r\n.\r\nsent\r\n"


def test_t_adds_header_recipients_to_the_arguments_once_each() -> None:
    with run_server() as server:
        done = sendmail("-t", "-f", ME, CC, "extra@example.net", server=server,
                        input=f"To: A <{YOU}>, {CC}\nBcc: {HIDDEN}\nSubject: s\n\nx\n".encode())
        (envelope,) = server.wait_for(1)
    assert done.returncode == 0, done.stderr
    assert envelope.rcpt_to == [CC, "extra@example.net", YOU, HIDDEN]
    assert b"Bcc" not in envelope.content


def test_bcc_is_removed_without_t_too_with_its_continuation_lines() -> None:
    with run_server() as server:
        done = sendmail("-f", ME, YOU, server=server,
                        input=f"To: {YOU}\nBcc: {HIDDEN},\n  other@example.net\nSubject: s\n\nx\n".encode())
        (envelope,) = server.wait_for(1)
    assert done.returncode == 0, done.stderr
    assert envelope.rcpt_to == [YOU]
    assert b"Bcc" not in envelope.content and b"other@" not in envelope.content
    assert parsed(envelope)["Subject"] == "s"


@pytest.mark.parametrize("option", [["-f", "<>"], ["-f", ""], ["-r<>"]])
def test_null_sender(option: list[str]) -> None:
    with run_server() as server:
        done = sendmail(*option, YOU, server=server, input=b"From: daemon@example.org\n\nbounce\n")
        (envelope,) = server.wait_for(1)
    assert done.returncode == 0, done.stderr
    assert envelope.mail_from == ""


def test_r_is_f_and_a_message_without_headers_gets_them() -> None:
    with run_server() as server:
        done = sendmail("-r", ME, YOU, server=server, input=b"just a line, no header\n", env={"NAME": "Me Myself"})
        (envelope,) = server.wait_for(1)
    assert done.returncode == 0, done.stderr
    assert envelope.mail_from == ME
    head = parsed(envelope)
    assert head["From"] == f"Me Myself <{ME}>"  # NAME, when -F is not given
    assert "Date" in head and "Message-ID" in head
    assert body(envelope) == b"just a line, no header\r\n"


def test_dsn_options_and_ignored_ones() -> None:
    with run_server() as server:
        done = sendmail("-N", "success,failure", "-R", "hdrs", "-V", "env-1", "-G", "-U", "-m", "-n", "-h", "20",
                        "-L", "label", "-O", "x=y", "-o7", "-odb", "-Ac", "-bm", "-f", ME, YOU, server=server,
                        input=b"Subject: s\n\nx\n")
        (envelope,) = server.wait_for(1)
    assert done.returncode == 0, done.stderr
    assert envelope.mail_options.ret == "HDRS" and envelope.mail_options.envid == "env-1"
    assert envelope.rcpt_options == [RcptOptions(notify=("SUCCESS", "FAILURE"))]
    with run_server() as server:
        assert sendmail("-N", "never", YOU, server=server).returncode == 0
        (envelope,) = server.wait_for(1)
    assert envelope.rcpt_options == [RcptOptions(notify=())]
    with run_server(dsn=False) as server:  # not offered: not asked for
        assert sendmail("-N", "never", "-R", "full", YOU, server=server).returncode == 0
        (envelope,) = server.wait_for(1)
    assert envelope.mail_options.ret is None and envelope.rcpt_options in ([], [RcptOptions()])


def test_v_shows_the_dialog_on_stderr() -> None:
    with run_server() as server:
        done = sendmail("-v", "-f", ME, YOU, server=server, input=b"Subject: s\n\nx\n")
    assert done.returncode == 0
    assert f"MAIL FROM:<{ME}>" in done.stderr and f"{YOU}: 250" in done.stderr


def test_a_long_message_streams_whole_with_8bitmime() -> None:
    line = "é" * 60 + "\n"
    text = ("Subject: big\n\n" + line * 40_000).encode()  # about 4.8 MB, past the read-ahead
    with run_server() as server:
        done = sendmail("-f", ME, YOU, server=server, input=text + b".\nnot sent\n")
        (envelope,) = server.wait_for(1, timeout=30)
    assert done.returncode == 0, done.stderr
    assert body(envelope) == line.replace("\n", "\r\n").encode() * 40_000  # ended at the lone dot
    assert envelope.mail_options.body == "8BITMIME" and envelope.mail_options.size is None


SMTP_SESSION = (  # what Symfony Mailer and Laravel say to `sendmail -bs` (here all at once)
    f"EHLO app.test\r\nMAIL FROM:<{ME}>\r\nRCPT TO:<{YOU}>\r\nDATA\r\nSubject: over -bs\r\n\r\nhi\r\n.\r\n"
    "QUIT\r\n"
).encode()


@pytest.mark.parametrize("flags", [["-bs"], ["-bs", "-i"]])
def test_bs_joins_stdin_and_stdout_to_the_server(flags: list[str]) -> None:
    with run_server() as server:
        done = sendmail(*flags, server=server, input=SMTP_SESSION)
        (envelope,) = server.wait_for(1)
    assert (done.returncode, done.stderr) == (0, "")
    replies = done.stdout.splitlines()
    assert replies[0].startswith("220 ") and replies[-1].startswith("221 ")
    assert "250 2.0.0 Message accepted for delivery" in replies
    assert envelope.mail_from == ME and envelope.rcpt_to == [YOU]
    assert envelope.content == b"Subject: over -bs\r\n\r\nhi\r\n"  # as the program wrote it: nothing added


def test_bs_with_the_server_down_is_tempfail() -> None:
    done = sendmail("-bs", env={"MAILWIRE_SMTP": "127.0.0.1:1"}, input=SMTP_SESSION)
    assert done.returncode == 75
    assert one_line(done.stderr).startswith("mailwire sendmail: cannot reach 127.0.0.1:1: ")


def test_console_script_and_a_sendmail_symlink(tmp_path: Path) -> None:
    scripts = Path(sys.executable).parent
    link = tmp_path / "sendmail"
    link.symlink_to(scripts / "mailwire")
    with run_server() as server:
        for command in ([str(scripts / "mailwire-sendmail")], [str(link)]):
            assert sendmail("-t", server=server, input=PHP_MAIL, command=command).returncode == 0
        server.wait_for(2)
        done = sendmail("-bp", command=[str(link)])
    assert one_line(done.stderr).startswith("sendmail: -bp (the queue")  # its name, as it was called


def test_environment_and_options_say_where_and_options_win(tmp_path: Path) -> None:
    with run_server() as server, run_server() as other:
        done = sendmail("--server", f"127.0.0.1:{other.port}", YOU, server=server, input=b"x\n")
        assert done.returncode == 0, done.stderr
        other.wait_for(1)
        assert len(server.messages) == 0
        done = sendmail("-S", f"127.0.0.1:{other.port}", YOU, input=b"x\n")  # Mailpit's -S
        assert done.returncode == 0, done.stderr
        other.wait_for(2)


def test_defaults_are_mailwire_serves() -> None:
    assert sendmail_cli.DEFAULT_SERVER == (serve_cli.DEFAULT_HOST, serve_cli.DEFAULT_PORT)


def test_auth_from_the_environment_reaches_the_server() -> None:
    with run_server(authenticator=Users({"app": "secret"}), allow_plaintext_auth=True) as server:
        done = sendmail("--allow-plaintext-auth", YOU, server=server, input=b"x\n",
                        env={"MAILWIRE_SMTP_AUTH": "app:secret", "MAILWIRE_SMTP_TLS": "none"})
        assert done.returncode == 0, done.stderr
        (envelope,) = server.wait_for(1)
        assert envelope.session is not None and envelope.session.auth_identity == "app"
        done = sendmail("--allow-plaintext-auth", "--tls", "none", "--auth", "app:wrong", YOU, server=server)
    assert done.returncode == 69
    assert one_line(done.stderr).startswith("mailwire sendmail: authentication failed at 127.0.0.1:")


# -- failures: sysexits.h codes, one line -------------------------------------------------------------


class _Refusing(BaseSession):
    async def rcpt(self, address: str, options: RcptOptions) -> None:
        if address.startswith("nobody"):
            raise SMTPError(550, "5.1.1", "No such user")
        if address.startswith("later"):
            raise SMTPError(450, "4.2.1", "Mailbox busy")


class _RefusingBackend:
    async def new_session(self, info: SessionInfo) -> Session:
        return _Refusing(info)


@pytest.mark.parametrize("rcpts, code, said", [
    (["nobody@example.net"], 69, "refused for nobody@example.net: 550 5.1.1 No such user"),
    (["later@example.net"], 75, "refused for later@example.net: 450 4.2.1 Mailbox busy"),
    ([YOU, "nobody@example.net"], 69, "refused for nobody@example.net: 550 5.1.1 No such user (sent to the other 1)"),
])
def test_refused_recipients(rcpts: list[str], code: int, said: str) -> None:
    with run_server(_RefusingBackend()) as server:
        done = sendmail(*rcpts, server=server, input=b"Subject: s\n\nx\n")
        server.call(lambda: None)
        got = len(server.messages)
    assert done.returncode == code
    assert one_line(done.stderr) == f"mailwire sendmail: {said}"
    assert got == (1 if YOU in rcpts else 0)


def test_server_down_is_tempfail() -> None:
    with run_server() as server:
        port = server.port
    done = sendmail(YOU, env={"MAILWIRE_SMTP": f"127.0.0.1:{port}"}, input=b"x\n")
    assert done.returncode == 75
    assert one_line(done.stderr).startswith(f"mailwire sendmail: cannot reach 127.0.0.1:{port}: ")


def test_starttls_required_but_not_offered_is_unavailable() -> None:
    with run_server() as server:
        done = sendmail("--tls", "starttls", YOU, server=server, input=b"x\n")
    assert done.returncode == 69
    assert "does not offer STARTTLS" in one_line(done.stderr)


@pytest.mark.parametrize("args, said", [
    ([], "no recipients: give them as arguments, or -t"),
    (["-Z", YOU], "unrecognized arguments: -Z"),
    (["-bp"], "-bp (the queue: there is none) is not supported"),
    (["-bs", "--auth", "u:p"], "-bs: the program on stdin authenticates itself"),
    (["-bs", "--tls", "starttls"], "-bs: the program on stdin speaks SMTP itself, so --tls starttls cannot be done"),
    (["-bx", YOU], "-bx: not a sendmail mode"),
    (["-q"], "-q (a queue run) is not supported"),
    (["-I"], "-I (the alias database: there is none) is not supported"),
    (["-B", "9BIT", YOU], "argument -B: expected 7BIT or 8BITMIME"),
    (["-N", "sometimes", YOU], "argument -N: expected never"),
    (["-f", "a@b c@d", YOU], "-f 'a@b c@d': not an address"),
    (["you@example.net>x"], "recipient 'you@example.net>x': not an address"),
    (["--tls", "none", "--auth", "u:p", YOU], "--auth with --tls none would send the password in plaintext"),
])
def test_bad_usage_is_64(args: list[str], said: str) -> None:
    done = sendmail(*args, env={"MAILWIRE_SMTP": "127.0.0.1:1"}, input=b"x\n")
    assert done.returncode == 64, done.stderr
    line = one_line(done.stderr)
    assert line.startswith("mailwire sendmail: ") and said in line, line


def test_bad_environment_is_64() -> None:
    done = sendmail(YOU, env={"MAILWIRE_SMTP": "host:port"}, input=b"x\n")
    assert done.returncode == 64
    assert "in the environment: expected HOST or HOST:PORT" in one_line(done.stderr)


def test_t_without_recipients_and_with_a_bad_one() -> None:
    done = sendmail("-t", input=b"Subject: nobody\n\nx\n", env={"MAILWIRE_SMTP": "127.0.0.1:1"})
    assert done.returncode == 64
    assert "-t found no To, Cc or Bcc field" in one_line(done.stderr)
    done = sendmail("-t", input=b"To: a@b.example, you@example.net>x\n\nx\n", env={"MAILWIRE_SMTP": "127.0.0.1:1"})
    assert done.returncode == 65, done.stderr
    assert one_line(done.stderr) == "mailwire sendmail: To field 'a@b.example, you@example.net>x': not a list of addresses"


def test_stdin_closed_is_noinput() -> None:
    with run_server() as server:
        done = sendmail(YOU, server=server, input=None)
        assert len(server.messages) == 0
    assert done.returncode == 66
    assert one_line(done.stderr) == "mailwire sendmail: no message: stdin is closed"


def test_help_lists_the_options() -> None:
    done = sendmail("--help")
    assert done.returncode == 0 and done.stdout.startswith("usage: mailwire sendmail [options]")
    for option in ("-t", "-i", "-f", "-r", "SENDER", "-F NAME", "--server", "-S", "HOST:PORT", "--tls", "--auth",
                   "USER:PASS", "-bs"):
        assert option in done.stdout


# -- the rules alone, on bytes --------------------------------------------------------------------------


class _Pieces(io.RawIOBase):
    """A stream that hands out ``size`` octets a read, as a pipe may."""

    def __init__(self, data: bytes, size: int) -> None:
        self.data, self.size = data, size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        piece, self.data = self.data[: min(self.size, len(buffer))], self.data[min(self.size, len(buffer)):]
        buffer[: len(piece)] = piece
        return len(piece)


def _read(data: bytes, size: int, dot_ends: bool = True) -> tuple[list[bytes], bytes]:
    reader = Input(io.BufferedReader(_Pieces(data, size), buffer_size=size), dot_ends=dot_ends)  # type: ignore[arg-type]
    lines, start = reader.head()
    return lines, start + b"".join(reader.pieces())


@pytest.mark.parametrize("size", [1, 2, 3, 5, 64])
def test_the_lone_dot_wherever_the_reads_cut(size: int) -> None:
    head = b"Subject: s\n\n"
    cases = {
        b"a\n.\nb\n": b"a\n", b"a\r\n.\r\nb\n": b"a\r\n", b".\nb\n": b"", b"a\n.": b"a\n", b"a\n.\r": b"a\n",
        b"a\n..\nb\n": b"a\n..\nb\n", b"a\n.b\n": b"a\n.b\n", b"a.\nb\n": b"a.\nb\n", b"a\n. \n": b"a\n. \n",
        b"a\n.\rb\n": b"a\n.\rb\n", b"x" * 100 + b"\n.\nz": b"x" * 100 + b"\n",
    }
    for data, expected in cases.items():
        assert _read(head + data, size) == ([b"Subject: s"], expected), data
        assert _read(head + data, size, dot_ends=False)[1] == data  # -i: all of it


def test_the_header_section_rules() -> None:
    assert _read(b"From alice Sun Dec  6 10:00:00 2026\nTo: a@b\n\nx\n", 64) == ([b"To: a@b"], b"x\n")
    assert _read(b"To: a@b,\n\tc@d\nNot a header line\n", 64) == ([b"To: a@b,", b"\tc@d"], b"Not a header line\n")
    assert _read(b" indented first\n", 64) == ([], b" indented first\n")
    assert _read(b"To: a@b\n.\nx\n", 64) == ([b"To: a@b"], b"")
    with pytest.raises(DataError, match="header section is over"):
        _read(b"X-Big: " + b"x" * (1 << 20) + b"\n\nx\n", 1 << 16)


def test_complete_adds_what_is_missing_and_drops_bcc() -> None:
    head = complete([b"To: a@b", b"Bcc: c@d,", b" e@f", b"Subject: s"], sender="me@example.org",
                    full_name="Ünïcode Name", now=0.0)
    lines = head.split(b"\r\n")
    assert lines[:2] == [b"To: a@b", b"Subject: s"] and lines[-2:] == [b"", b""]
    assert lines[2] == b"From: =?utf-8?b?w5xuw69jb2RlIE5hbWU=?= <me@example.org>"
    assert lines[3].startswith(b"Date: Thu, 01 Jan 1970") and lines[4].startswith(b"Message-ID: <")
    injected = complete([], sender="me@x.org", full_name="Name\nBcc: evil@x.org")
    assert injected.split(b"\r\n")[0] == b'From: "Name Bcc: evil@x.org" <me@x.org>'
    given = [b"From: x@y", b"date: Sun, 6 Dec 2026 10:00:00 +0000", b"Message-Id: <1@y>"]
    assert complete(given, sender="", full_name=None) == b"\r\n".join(given) + b"\r\n\r\n"


def test_recipients_of_t() -> None:
    assert recipients([b"To: A <a@b>, c@d", b"Cc: e@f", b"Bcc: g@h"]) == ["a@b", "c@d", "e@f", "g@h"]
    resent = [b"To: old@x", b"Resent-Date: Sun, 6 Dec 2026 10:00:00 +0000", b"Resent-To: new@x"]
    assert recipients(resent) == ["new@x"]
    assert recipients([b"To: undisclosed-recipients:;", b"Bcc: a@b"]) == ["a@b"]
    assert recipients([b"To: Friends: a@b,", b" c@d;"]) == ["a@b", "c@d"]
    with pytest.raises(DataError, match="Cc field 'a@b, x@y>z': not a list of addresses"):
        recipients([b"Cc: a@b, x@y>z"])
