"""SASL mechanisms, client and server halves, with bytes only (no sockets)."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailwire.errors import AuthenticationError, LocalProtocolError, RemoteProtocolError
from mailwire.sasl import (
    SERVER_MECHANISMS,
    Challenge,
    ClientMechanism,
    CramMD5,
    Credentials,
    Login,
    Plain,
    ServerCramMD5,
    ServerLogin,
    ServerMechanism,
    ServerPlain,
    ServerXOAuth2,
    XOAuth2,
    choose_mechanism,
    server_mechanism,
)

RFC2195_CHALLENGE = b"<1896.697170952@postoffice.reston.mci.net>"
RFC2195_RESPONSE = b"tim b913a602c7eda7a495b4e6e7334d3890"
# Google's documented example (developers.google.com/gmail/imap/xoauth2-protocol).
GOOGLE_TOKEN = "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg"
GOOGLE_MESSAGE = (
    b"user=someuser@example.com\x01auth=Bearer ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg\x01\x01"
)


def exchange(
    client: ClientMechanism, server: ServerMechanism, *, use_initial: bool = True
) -> Credentials:
    """Drive a client half against a server half the way the SMTP core would."""
    initial = client.initial_response() if use_initial else None
    result = server.step(initial)
    for _ in range(5):
        if isinstance(result, Credentials):
            return result
        result = server.step(client.respond(result.data))
    raise AssertionError("exchange did not finish")


def cram_digest(password: str, challenge: bytes) -> str:
    return hmac.new(password.encode(), challenge, hashlib.md5).hexdigest()


# --------------------------------------------------------------------------
# Client halves: what goes on the wire (before base64)


@pytest.mark.parametrize(
    ("mechanism", "initial", "challenges", "answers"),
    [
        (Plain("tim", "tanstaaf"), b"\0tim\0tanstaaf", [], []),
        (Plain("tim", "tanstaaf", authzid="admin"), b"admin\0tim\0tanstaaf", [], []),
        (Plain("jörg", "pässwörd"), "\0jörg\0pässwörd".encode(), [], []),
        (Login("tim", "tanstaaf"), None, [b"Username:", b"Password:"], [b"tim", b"tanstaaf"]),
        # Prompts worded differently (or not at all) still get answered by order.
        (Login("tim", "pw"), None, [b"User Name\0", b"Password\0"], [b"tim", b"pw"]),
        (Login("tim", "pw"), None, [b"", b""], [b"tim", b"pw"]),
        (Login("tim", "pw"), None, [b"Benutzername:", b"Kennwort:"], [b"tim", b"pw"]),
        (Login("jörg", ""), None, [b"Username:", b"Password:"], ["jörg".encode(), b""]),
        (CramMD5("tim", "tanstaaftanstaaf"), None, [RFC2195_CHALLENGE], [RFC2195_RESPONSE]),
        (XOAuth2("someuser@example.com", GOOGLE_TOKEN), GOOGLE_MESSAGE, [], []),
        (XOAuth2("someuser@example.com", lambda: GOOGLE_TOKEN), GOOGLE_MESSAGE, [], []),
    ],
    ids=lambda v: v.name if hasattr(v, "name") else None,
)
def test_client_wire_bytes(
    mechanism: ClientMechanism,
    initial: bytes | None,
    challenges: list[bytes],
    answers: list[bytes],
) -> None:
    assert mechanism.initial_response() == initial
    assert [mechanism.respond(c) for c in challenges] == answers


def test_client_names() -> None:
    assert [m.name for m in (Plain("u", "p"), Login("u", "p"), CramMD5("u", "p"), XOAuth2("u", "t"))] == [
        "PLAIN",
        "LOGIN",
        "CRAM-MD5",
        "XOAUTH2",
    ]


def test_rfc2195_example() -> None:
    client = CramMD5("tim", "tanstaaftanstaaf")
    assert client.initial_response() is None
    assert client.respond(RFC2195_CHALLENGE) == RFC2195_RESPONSE

    server = ServerCramMD5("postoffice.reston.mci.net", challenge=RFC2195_CHALLENGE)
    assert server.step(None) == Challenge(RFC2195_CHALLENGE)
    creds = server.step(RFC2195_RESPONSE)
    assert isinstance(creds, Credentials)
    assert creds.username == "tim"
    assert creds.cram_challenge == RFC2195_CHALLENGE
    assert creds.cram_digest == "b913a602c7eda7a495b4e6e7334d3890"
    assert creds.check_password("tanstaaftanstaaf")
    assert not creds.check_password("tanstaaf")


def test_plain_without_initial_response_answers_empty_challenge_once() -> None:
    client = Plain("tim", "pw")
    assert client.respond(b"") == b"\0tim\0pw"
    with pytest.raises(RemoteProtocolError):
        client.respond(b"")


def test_plain_challenge_after_initial_response_is_a_remote_error() -> None:
    client = Plain("tim", "pw")
    client.initial_response()
    with pytest.raises(RemoteProtocolError):
        client.respond(b"")


def test_login_third_challenge_is_a_remote_error() -> None:
    client = Login("tim", "pw")
    client.respond(b"Username:")
    client.respond(b"Password:")
    with pytest.raises(RemoteProtocolError):
        client.respond(b"Password:")


def test_cram_md5_refuses_empty_and_second_challenge() -> None:
    with pytest.raises(RemoteProtocolError):
        CramMD5("tim", "pw").respond(b"")
    client = CramMD5("tim", "pw")
    client.respond(b"<1.2@host>")
    with pytest.raises(RemoteProtocolError):
        client.respond(b"<1.2@host>")


def test_cram_md5_digest_depends_on_challenge() -> None:
    one = CramMD5("tim", "pw").respond(b"<1@h>")
    two = CramMD5("tim", "pw").respond(b"<2@h>")
    assert one != two
    assert one == b"tim " + cram_digest("pw", b"<1@h>").encode()


def test_xoauth2_token_callable_is_evaluated_when_the_response_is_built() -> None:
    tokens = iter(["first", "second"])
    calls: list[str] = []

    def fetch() -> str:
        calls.append("call")
        return next(tokens)

    client = XOAuth2("me@example.com", fetch)
    assert calls == []  # not at construction
    assert client.initial_response() == b"user=me@example.com\x01auth=Bearer first\x01\x01"
    assert calls == ["call"]
    assert XOAuth2("me@example.com", fetch).initial_response().endswith(b"Bearer second\x01\x01")


def test_xoauth2_answers_json_error_challenge_with_empty_response() -> None:
    client = XOAuth2("me@example.com", "tok")
    client.initial_response()
    error = b'{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}'
    assert client.respond(error) == b""
    assert client.error == error
    with pytest.raises(RemoteProtocolError):
        client.respond(error)


def test_xoauth2_without_initial_response_sends_message_on_empty_challenge() -> None:
    client = XOAuth2("me@example.com", "tok")
    assert client.respond(b"") == b"user=me@example.com\x01auth=Bearer tok\x01\x01"
    assert client.error is None
    assert client.respond(b'{"status":"400"}') == b""


# --------------------------------------------------------------------------
# Client halves: credentials refused before anything is sent

ALL_CLIENTS: list[Callable[[str, str], ClientMechanism]] = [Plain, Login, CramMD5, XOAuth2]


@pytest.mark.parametrize("factory", ALL_CLIENTS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("username", ["tim\r\nRSET", "tim\n", "\rtim", "a\rb"])
def test_cr_lf_in_username_is_refused_by_every_client(
    factory: Callable[[str, str], ClientMechanism], username: str
) -> None:
    with pytest.raises(LocalProtocolError, match="CR or LF"):
        factory(username, "secret")


@pytest.mark.parametrize("factory", ALL_CLIENTS, ids=lambda f: f.__name__)
def test_empty_username_is_refused(factory: Callable[[str, str], ClientMechanism]) -> None:
    with pytest.raises(LocalProtocolError):
        factory("", "secret")


@pytest.mark.parametrize(
    ("username", "password", "authzid"),
    [("ti\0m", "pw", ""), ("tim", "p\0w", ""), ("tim", "pw", "ad\0min"), ("tim", "\0", "")],
)
def test_plain_refuses_nul_inside_fields(username: str, password: str, authzid: str) -> None:
    with pytest.raises(LocalProtocolError, match="NUL"):
        Plain(username, password, authzid)


def test_plain_refuses_empty_password_and_crlf_authzid() -> None:
    with pytest.raises(LocalProtocolError):
        Plain("tim", "")
    with pytest.raises(LocalProtocolError, match="CR or LF"):
        Plain("tim", "pw", authzid="ad\r\nmin")


def test_unencodable_password_is_a_local_error() -> None:
    with pytest.raises(LocalProtocolError, match="UTF-8"):
        Login("tim", "\ud800")
    assert issubclass(LocalProtocolError, ValueError)


@pytest.mark.parametrize("token", ["", "a\x01b", "tok\r\n", "tok\n"])
def test_xoauth2_refuses_bad_tokens(token: str) -> None:
    with pytest.raises(LocalProtocolError):
        XOAuth2("me@example.com", token)
    lazy = XOAuth2("me@example.com", lambda: token)  # only known when called
    with pytest.raises(LocalProtocolError):
        lazy.initial_response()


def test_xoauth2_refuses_soh_in_username() -> None:
    with pytest.raises(LocalProtocolError):
        XOAuth2("me\x01auth=Bearer x", "tok")


# --------------------------------------------------------------------------
# choose_mechanism


@pytest.mark.parametrize(
    ("advertised", "kwargs", "expected"),
    [
        (["PLAIN", "LOGIN", "CRAM-MD5"], {"password": "pw"}, "CRAM-MD5"),
        (["PLAIN", "LOGIN"], {"password": "pw"}, "PLAIN"),
        (["LOGIN"], {"password": "pw"}, "LOGIN"),
        (["login", "plain"], {"password": "pw"}, "PLAIN"),
        (["Cram-Md5"], {"password": "pw"}, "CRAM-MD5"),
        ("PLAIN LOGIN", {"password": "pw"}, "PLAIN"),
        (["PLAIN", "LOGIN"], {"password": "pw", "preference": ("LOGIN", "PLAIN")}, "LOGIN"),
        (["PLAIN", "XOAUTH2"], {"token": "tok"}, "XOAUTH2"),
        (["PLAIN", "xoauth2"], {"password": "pw", "token": "tok"}, "XOAUTH2"),
        (["PLAIN"], {"password": "pw", "token": "tok"}, "PLAIN"),
        (["GSSAPI", "NTLM", "LOGIN"], {"password": "pw"}, "LOGIN"),
    ],
)
def test_choose_mechanism(
    advertised: list[str] | str, kwargs: dict[str, object], expected: str
) -> None:
    mechanism = choose_mechanism(advertised, "tim", **kwargs)  # type: ignore[arg-type]
    assert mechanism.name == expected


def test_choose_mechanism_builds_with_the_given_credentials() -> None:
    plain = choose_mechanism(["PLAIN"], "tim", "pw")
    assert plain.initial_response() == b"\0tim\0pw"
    xoauth2 = choose_mechanism(["XOAUTH2"], "tim", token=lambda: "fresh")
    assert xoauth2.initial_response() == b"user=tim\x01auth=Bearer fresh\x01\x01"


@pytest.mark.parametrize(
    ("advertised", "kwargs", "offers", "supports"),
    [
        (["GSSAPI", "NTLM"], {"password": "pw"}, "GSSAPI NTLM", "CRAM-MD5 PLAIN LOGIN"),
        ([], {"password": "pw"}, "none", "CRAM-MD5 PLAIN LOGIN"),
        (["PLAIN"], {"token": "tok"}, "PLAIN", "XOAUTH2"),
        (["XOAUTH2"], {"password": "pw", "preference": ("PLAIN",)}, "XOAUTH2", "PLAIN"),
    ],
)
def test_choose_mechanism_without_common_mechanism(
    advertised: list[str], kwargs: dict[str, object], offers: str, supports: str
) -> None:
    with pytest.raises(AuthenticationError) as info:
        choose_mechanism(advertised, "tim", **kwargs)  # type: ignore[arg-type]
    assert info.value.code == 504
    assert str(info.value.enhanced) == "5.5.4"
    assert info.value.text == f"no common AUTH mechanism: server offers {offers}, we support {supports}"


def test_choose_mechanism_local_misuse() -> None:
    with pytest.raises(LocalProtocolError):
        choose_mechanism(["PLAIN"], "tim")
    with pytest.raises(LocalProtocolError, match="SCRAM"):
        choose_mechanism(["PLAIN"], "tim", "pw", preference=("SCRAM-SHA-256", "PLAIN"))
    with pytest.raises(LocalProtocolError):
        choose_mechanism(["PLAIN"], "tim\r\n", "pw")


# --------------------------------------------------------------------------
# Round trips: every client half against its server half


@pytest.mark.parametrize("use_initial", [True, False], ids=["initial", "no-initial"])
@pytest.mark.parametrize(
    ("client", "server", "expected", "password"),
    [
        (
            lambda: Plain("tim", "s3cret"),
            ServerPlain,
            Credentials("PLAIN", "", "tim", password="s3cret"),
            "s3cret",
        ),
        (
            lambda: Plain("jörg", "pässwörd ünïcode", authzid="ädmin"),
            ServerPlain,
            Credentials("PLAIN", "ädmin", "jörg", password="pässwörd ünïcode"),
            "pässwörd ünïcode",
        ),
        (
            lambda: Login("tim", "s3cret"),
            ServerLogin,
            Credentials("LOGIN", "", "tim", password="s3cret"),
            "s3cret",
        ),
        (
            lambda: CramMD5("tim user", "s3cret"),
            lambda: ServerCramMD5("mx.example.org", challenge=b"<42.7@mx.example.org>"),
            Credentials(
                "CRAM-MD5",
                "",
                "tim user",
                cram_challenge=b"<42.7@mx.example.org>",
                cram_digest=cram_digest("s3cret", b"<42.7@mx.example.org>"),
            ),
            "s3cret",
        ),
        (
            lambda: XOAuth2("me@example.com", "tok.en-1"),
            ServerXOAuth2,
            Credentials("XOAUTH2", "", "me@example.com", token="tok.en-1"),
            None,
        ),
    ],
    ids=["plain", "plain-authzid", "login", "cram-md5", "xoauth2"],
)
def test_round_trip(
    client: Callable[[], ClientMechanism],
    server: Callable[[], ServerMechanism],
    expected: Credentials,
    password: str | None,
    use_initial: bool,
) -> None:
    creds = exchange(client(), server(), use_initial=use_initial)
    assert creds == expected
    if password is None:  # a token proves no password
        assert not creds.check_password("tok.en-1")
        assert not creds.check_password("")
    else:
        assert creds.check_password(password)
        assert not creds.check_password(password + "x")
        assert not creds.check_password(password.upper())
        assert not creds.check_password("")


def test_cram_md5_round_trip_proves_password_without_sending_it() -> None:
    server = ServerCramMD5("mx.example.org")
    challenge = server.step(None)
    assert isinstance(challenge, Challenge)
    answer = CramMD5("tim", "s3cret").respond(challenge.data)
    assert b"s3cret" not in answer
    creds = server.step(answer)
    assert isinstance(creds, Credentials)
    assert creds.cram_digest == cram_digest("s3cret", challenge.data)
    assert creds.check_password("s3cret")
    assert not creds.check_password("S3cret")


def test_cram_md5_challenges_are_random_msg_ids() -> None:
    challenges = set()
    for _ in range(20):
        step = ServerCramMD5("mx.example.org").step(None)
        assert isinstance(step, Challenge)
        assert re.fullmatch(rb"<\d+\.\d+@mx\.example\.org>", step.data)
        challenges.add(step.data)
    assert len(challenges) == 20


def test_cram_md5_server_accepts_upper_case_hex() -> None:
    server = ServerCramMD5("h", challenge=RFC2195_CHALLENGE)
    server.step(None)
    creds = server.step(RFC2195_RESPONSE.upper().replace(b"TIM", b"tim"))
    assert isinstance(creds, Credentials)
    assert creds.check_password("tanstaaftanstaaf")


def test_login_server_accepts_username_as_initial_response() -> None:
    server = ServerLogin()
    assert server.step(b"tim") == Challenge(b"Password:")
    creds = server.step(b"s3cret")
    assert creds == Credentials("LOGIN", "", "tim", password="s3cret")


def test_server_prompts() -> None:
    assert ServerPlain().step(None) == Challenge(b"")
    assert ServerLogin().step(None) == Challenge(b"Username:")
    assert ServerXOAuth2().step(None) == Challenge(b"")


def test_xoauth2_server_ignores_extra_keys_and_scheme_case() -> None:
    creds = ServerXOAuth2().step(b"user=me\x01host=mx\x01auth=bearer abc==\x01\x01")
    assert creds == Credentials("XOAUTH2", "", "me", token="abc==")


def test_credentials_repr_hides_secrets() -> None:
    text = repr(Credentials("PLAIN", "", "tim", password="hunter2", token="tok-secret"))
    assert "tim" in text
    assert "hunter2" not in text and "tok-secret" not in text
    assert "hunter2" not in repr(Plain("tim", "hunter2"))


def test_check_password_false_without_secret() -> None:
    assert not Credentials("XOAUTH2", "", "me", token="t").check_password("t")
    assert not Credentials("CRAM-MD5", "", "me").check_password("")


# --------------------------------------------------------------------------
# Bad input to server halves: 501 5.5.2, never another exception


def plain_started() -> ServerMechanism:
    return ServerPlain()


def cram_started() -> ServerMechanism:
    server = ServerCramMD5("h", challenge=RFC2195_CHALLENGE)
    server.step(None)
    return server


def login_after_username() -> ServerMechanism:
    server = ServerLogin()
    server.step(None)
    server.step(b"tim")
    return server


HEX32 = b"b913a602c7eda7a495b4e6e7334d3890"


@pytest.mark.parametrize(
    ("make", "response"),
    [
        (plain_started, b"timsecret"),  # no NUL at all
        (plain_started, b"\0timsecret"),  # one NUL
        (plain_started, b"a\0tim\0secret\0x"),  # three NULs
        (plain_started, b"\0\0secret"),  # empty username
        (plain_started, b"\0tim\0"),  # empty password
        (plain_started, b"\0t\xffim\0secret"),  # non-UTF-8 username
        (plain_started, b"\0tim\0sec\xc3ret"),  # non-UTF-8 password
        (plain_started, b"\xff\0tim\0secret"),  # non-UTF-8 authzid
        (plain_started, b"\0tim\r\nRSET\0secret"),  # CR/LF in username
        (plain_started, b""),
        (ServerLogin, b""),  # empty username as initial response
        (ServerLogin, b"\xfe\xff"),
        (login_after_username, b"pass\xff"),
        (lambda: ServerCramMD5("h"), b"tim " + HEX32),  # CRAM-MD5 takes no initial response
        (cram_started, b"tim"),  # no space
        (cram_started, b"tim " + HEX32[:-1]),  # 31 digits
        (cram_started, b"tim " + HEX32 + b"0"),  # 33 digits
        (cram_started, b"tim " + b"z" * 32),  # not hex
        (cram_started, b" " + HEX32),  # empty username
        (cram_started, b"t\xffm " + HEX32),  # non-UTF-8
        (ServerXOAuth2, b"user=me\x01auth=Bearer t"),  # no SOH SOH
        (ServerXOAuth2, b"user=me\x01\x01"),  # no auth
        (ServerXOAuth2, b"auth=Bearer t\x01\x01"),  # no user
        (ServerXOAuth2, b"user=me\x01auth=Basic dXNlcg==\x01\x01"),  # wrong scheme
        (ServerXOAuth2, b"user=me\x01auth=Bearer \x01\x01"),  # empty token
        (ServerXOAuth2, b"user=me\x01user=you\x01auth=Bearer t\x01\x01"),  # duplicate key
        (ServerXOAuth2, b"user=me\x01garbage\x01auth=Bearer t\x01\x01"),  # pair without '='
        (ServerXOAuth2, b"user=m\xffe\x01auth=Bearer t\x01\x01"),  # non-UTF-8
        (ServerXOAuth2, b"user=\x01auth=Bearer t\x01\x01"),  # empty user
    ],
)
def test_server_rejects_malformed_input_with_501(
    make: Callable[[], ServerMechanism], response: bytes
) -> None:
    server = make()
    with pytest.raises(RemoteProtocolError) as info:
        server.step(response)
    assert info.value.reply.code == 501
    assert str(info.value.reply.enhanced) == "5.5.2"


def test_server_error_reply_does_not_echo_the_password() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        ServerPlain().step(b"\0tim\0hunter2\xff")
    assert b"hunter2" not in info.value.reply.to_bytes()
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize(
    ("make", "steps"),
    [
        (ServerPlain, [b"\0tim\0pw"]),
        (ServerLogin, [b"tim", b"pw"]),
        (lambda: ServerCramMD5("h", challenge=RFC2195_CHALLENGE), [None, RFC2195_RESPONSE]),
        (ServerXOAuth2, [b"user=me\x01auth=Bearer t\x01\x01"]),
    ],
    ids=["PLAIN", "LOGIN", "CRAM-MD5", "XOAUTH2"],
)
def test_server_too_many_steps_is_501(
    make: Callable[[], ServerMechanism], steps: list[bytes | None]
) -> None:
    server = make()
    results = [server.step(s) for s in steps]
    assert isinstance(results[-1], Credentials)
    with pytest.raises(RemoteProtocolError) as info:
        server.step(b"more")
    assert info.value.reply.code == 501


@pytest.mark.parametrize(
    "make", [ServerPlain, ServerLogin, lambda: ServerCramMD5("h"), ServerXOAuth2]
)
def test_server_step_none_only_starts(make: Callable[[], ServerMechanism]) -> None:
    server = make()
    assert isinstance(server.step(None), Challenge)
    with pytest.raises(LocalProtocolError):
        server.step(None)


def test_server_mechanism_lookup() -> None:
    assert set(SERVER_MECHANISMS) == {"PLAIN", "LOGIN", "CRAM-MD5", "XOAUTH2"}
    assert isinstance(server_mechanism("plain", "h"), ServerPlain)
    assert isinstance(server_mechanism("Login", "h"), ServerLogin)
    assert isinstance(server_mechanism("XOAUTH2", "h"), ServerXOAuth2)
    cram = server_mechanism("cram-md5", "mx.example.org")
    assert isinstance(cram, ServerCramMD5)
    first = cram.step(None)
    assert isinstance(first, Challenge) and first.data.endswith(b"@mx.example.org>")
    assert server_mechanism("SCRAM-SHA-256", "h") is None
    assert server_mechanism("", "h") is None
    # Each call is a fresh exchange.
    assert server_mechanism("PLAIN", "h") is not server_mechanism("PLAIN", "h")


# --------------------------------------------------------------------------
# Properties

no_nul = st.text().filter(lambda s: "\0" not in s)
identity = st.text().filter(lambda s: not {"\0", "\r", "\n"} & set(s))


@given(username=identity.filter(bool), password=no_nul.filter(bool), authzid=identity)
def test_plain_round_trip_property(username: str, password: str, authzid: str) -> None:
    creds = exchange(Plain(username, password, authzid), ServerPlain())
    assert (creds.authzid, creds.username, creds.password) == (authzid, username, password)
    assert creds.check_password(password)
    assert not creds.check_password(password + "x")


@given(username=identity.filter(bool), password=st.text())
def test_login_round_trip_property(username: str, password: str) -> None:
    creds = exchange(Login(username, password), ServerLogin())
    assert (creds.username, creds.password) == (username, password)
    assert creds.check_password(password)


@given(username=identity.filter(bool), password=st.text(), challenge=st.binary(min_size=1))
def test_cram_md5_round_trip_property(username: str, password: str, challenge: bytes) -> None:
    server = ServerCramMD5("h", challenge=challenge)
    creds = exchange(CramMD5(username, password), server)
    assert creds.username == username
    assert creds.check_password(password)
    assert not creds.check_password(password + "x")


@given(
    make=st.sampled_from([ServerPlain, ServerLogin, lambda: ServerCramMD5("h"), ServerXOAuth2]),
    start=st.booleans(),
    lines=st.lists(st.binary(max_size=64), min_size=1, max_size=4),
)
def test_server_halves_fail_only_with_501(
    make: Callable[[], ServerMechanism], start: bool, lines: list[bytes]
) -> None:
    server = make()
    if start:
        server.step(None)
    for line in lines:
        try:
            result = server.step(line)
        except RemoteProtocolError as exc:
            assert exc.reply.code == 501
            return
        assert isinstance(result, (Challenge, Credentials))
