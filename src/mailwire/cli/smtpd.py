"""``python -m mailwire.smtpd``: the removed ``smtpd`` module's command line.

``python -m smtpd -n -c DebuggingServer localhost:1025`` is in countless
READMEs, tutorials and Makefiles; on Python 3.12+ the same line with
``mailwire.smtpd`` must do what it did. So this is smtpd's ``parseargs`` and
``__main__`` block, kept in their order, on ``mailwire.smtpd``'s servers:

1. The arguments are read with ``getopt`` and smtpd's option table, so the
   same spellings, unique prefixes of long options (``--cl``), the stop at
   the first positional argument, and the same messages: a bad option, an
   extra argument or a ``host:port`` without a colon or an integer port is
   smtpd's usage text and the reason on stderr, exit 1; ``-h`` is the usage
   text with exit 0; ``-V`` prints the version on stdout; ``-s`` that is not
   an integer is ``Invalid size: ...``, exit 1. Defaults as in smtpd:
   ``localhost:8025`` and ``localhost:25``, class ``PureProxy``, no size limit
   (smtpd's ``-s`` default, whatever its usage text says).
2. ``-c NAME`` is a class of ``mailwire.smtpd`` (smtpd looked in itself);
   ``-c module.Class`` imports the user's module, as smtpd did.
3. The class is made with smtpd's arguments, which binds.
4. Without ``-n`` the process becomes ``nobody`` once bound, as smtpd did,
   and exits 1 with smtpd's message when it cannot (any user but root);
   modules the servers load late are loaded first, since ``nobody`` may not
   be able to read the Python installation.
5. ``mailwire.smtpd.loop()`` serves until SIGINT (Ctrl-C) or SIGTERM, exit 0.

Where smtpd printed a traceback, a defined answer instead, with smtpd's
exit code 1: an unknown class, or one that is not a ``mailwire.smtpd``
server (one written for the standard library's smtpd, say), is the usage
text and the reason; a local port outside 0-65535 is ``Bad local port`` as
one that is not a number was; an address that cannot be bound or resolved,
or a class refusing its arguments (``-u`` with ``PureProxy``), is one line
naming it. Errors raised by the user's own module stay tracebacks.

Where it differs on purpose: a remote port outside 0-65535 is ``Bad remote
port`` (smtpd took it, and its proxy failed at each message); a negative
``-s`` is ``Invalid size`` (smtpd then refused every message); as root, the
switch to ``nobody`` drops root's groups too (smtpd kept group 0); SIGTERM
stops as Ctrl-C does (smtpd died of it, its output unflushed), and Ctrl-C
works even when started with SIGINT ignored; stdout is line-buffered, so
what ``DebuggingServer`` prints reaches a pipe (``docker logs``, ``tee``) as
each message arrives, not at exit. And ``PureProxy``, the default class,
relays: smtpd's has dropped every client after DATA since Python 3.6 (its
``process_message`` takes no ``mail_options``).
"""

from __future__ import annotations

import getopt
import importlib
import io
import os
import signal
import sys
from types import FrameType
from typing import Any, NoReturn

from .. import smtpd

__all__ = ["Options", "main", "parseargs", "usage"]

USAGE = """\
An RFC 5321 smtp proxy with optional RFC 1870 and RFC 6531 extensions.

Usage: %(program)s [options] [localhost:localport [remotehost:remoteport]]

Options:

    --nosetuid
    -n
        This program generally tries to setuid `nobody', unless this flag is
        set.  The setuid call will fail if this program is not run as root (in
        which case, use this flag).

    --version
    -V
        Print the version number and exit.

    --class classname
    -c classname
        Use `classname' as the concrete SMTP proxy class.  Uses `PureProxy' by
        default.

    --size limit
    -s limit
        Restrict the total size of the incoming message to "limit" number of
        bytes via the RFC 1870 SIZE extension.  Defaults to 33554432 bytes.

    --smtputf8
    -u
        Enable the SMTPUTF8 extension and behave as an RFC 6531 smtp proxy.

    --debug
    -d
        Turn on debugging prints.

    --help
    -h
        Print this message and exit.

Version: %(__version__)s

If localhost is not given then `localhost' is used, and if localport is not
given then 8025 is used.  If remotehost is not given then `localhost' is used,
and if remoteport is not given, then 25 is used.
"""

# The modules of the standard library a program written for smtpd imports;
# Python 3.12 has none of them.
_STDLIB_ONLY = {"smtpd", "asyncore", "asynchat"}
_CONVERT = "on Python 3.12+ write `import mailwire.smtpd as smtpd` and call smtpd.loop(), not asyncore.loop()"


class Options:
    """What the command line asked for, with smtpd's defaults."""

    setuid = True
    classname = "PureProxy"
    size_limit: int | None = None
    enable_SMTPUTF8 = False
    localhost = "localhost"
    localport = 8025
    remotehost = "localhost"
    remoteport = 25


def usage(code: int, msg: object = "") -> NoReturn:
    """smtpd's usage text on stderr (and ``msg`` after it), then exit ``code``."""
    program = sys.argv[0] if sys.argv else "smtpd"
    print(USAGE % {"program": program, "__version__": smtpd.__version__}, file=sys.stderr)
    if msg:
        print(msg, file=sys.stderr)
    sys.exit(code)


def parseargs(argv: list[str] | None = None) -> Options:
    """smtpd's ``parseargs`` (of ``sys.argv[1:]`` unless ``argv``); ``-d``
    points ``mailwire.smtpd.DEBUGSTREAM`` at stderr, as smtpd's did its own."""
    args = sys.argv[1:] if argv is None else argv
    try:
        opts, args = getopt.getopt(
            args, "nVhc:s:du", ["class=", "nosetuid", "version", "help", "size=", "debug", "smtputf8"])
    except getopt.error as err:
        usage(1, err)

    options = Options()
    for opt, arg in opts:
        if opt in ("-h", "--help"):
            usage(0)
        elif opt in ("-V", "--version"):
            print(smtpd.__version__)
            sys.exit(0)
        elif opt in ("-n", "--nosetuid"):
            options.setuid = False
        elif opt in ("-c", "--class"):
            options.classname = arg
        elif opt in ("-d", "--debug"):
            smtpd.DEBUGSTREAM = sys.stderr
        elif opt in ("-u", "--smtputf8"):
            options.enable_SMTPUTF8 = True
        elif opt in ("-s", "--size"):
            options.size_limit = _size(arg)

    if len(args) > 2:
        usage(1, "Invalid arguments: %s" % smtpd.COMMASPACE.join(args))
    localspec = args[0] if args else "localhost:8025"
    remotespec = args[1] if len(args) > 1 else "localhost:25"
    options.localhost, options.localport = _split(localspec, "local")
    options.remotehost, options.remoteport = _split(remotespec, "remote")
    return options


def _size(arg: str) -> int:
    # smtpd took int(arg) as it came; a negative limit made it refuse every
    # message, which no one asks for: that is an invalid size too.
    try:
        size = int(arg)
    except ValueError:
        size = -1
    if size < 0:
        print("Invalid size: " + arg, file=sys.stderr)
        sys.exit(1)
    return size


def _split(spec: str, which: str) -> tuple[str, int]:
    """``host:port`` split at the first colon, as smtpd split it."""
    host, colon, port = spec.partition(":")
    if not colon:
        usage(1, f"Bad {which} spec: {spec}")
    try:
        number = int(port)
    except ValueError:
        number = -1
    if not 0 <= number <= 65535:  # smtpd checked int() only: bind() then raised, or the proxy failed
        usage(1, f"Bad {which} port: {spec}")
    return host, number


def server_class(name: str) -> type[smtpd.SMTPServer]:
    """The ``-c`` class: a name in ``mailwire.smtpd``, or ``module.Class``."""
    module: Any = smtpd
    attr = name
    if "." in name:
        modname, _, attr = name.rpartition(".")
        if not modname or modname.startswith("."):  # importlib would raise (relative, or empty)
            usage(1, f"Unknown class: {name}")
        try:
            module = importlib.import_module(modname)
        except ModuleNotFoundError as err:
            missing = err.name or ""
            if missing in _STDLIB_ONLY:
                _fail(f"Cannot import {modname}: {err} ({_CONVERT})")
            if modname == missing or modname.startswith(missing + "."):
                usage(1, f"Unknown class: {name} (no module named {missing!r})")
            raise  # the user's module failed to import something else: its traceback
    cls = getattr(module, attr, None)
    if cls is None:
        usage(1, f"Unknown class: {name}")
    if not (isinstance(cls, type) and issubclass(cls, smtpd.SMTPServer)):
        written_for_smtpd = any(getattr(klass, "__module__", None) == "smtpd" for klass in getattr(cls, "__mro__", ()))
        hint = f" ({_CONVERT})" if written_for_smtpd else ""
        usage(1, f"Not a mailwire.smtpd.SMTPServer class: {name}{hint}")
    return cls


def _fail(message: str) -> NoReturn:
    print(message, file=sys.stderr)
    sys.exit(1)


def become_nobody() -> None:
    """smtpd's setuid to ``nobody``, with smtpd's message when it is refused.

    As root the groups go first (smtpd kept root's group and supplementary
    groups: a process that drops its user to be harmless should not keep
    group 0). Anyone else cannot change user, as under smtpd: ``-n``.
    """
    try:
        import pwd
    except ImportError:
        _fail('Cannot import module "pwd"; try running with -n option.')
    try:
        nobody = pwd.getpwnam("nobody")
        if os.geteuid() == 0:
            os.setgroups([])
            os.setgid(nobody.pw_gid)
        os.setuid(nobody.pw_uid)
    except (KeyError, OSError):  # no such user; not allowed (smtpd caught PermissionError only)
        _fail('Cannot setuid "nobody"; try running with -n option.')


def _preload(cls: type[smtpd.SMTPServer]) -> None:
    # Imported on first use, which may come after the switch to nobody, who
    # may not read the installation (a Python under /root, mode 0700).
    if issubclass(cls, smtpd.PureProxy):
        importlib.import_module("mailwire.client.sync")


def _terminate(signum: int, frame: FrameType | None) -> None:
    # SIGTERM stops the server as Ctrl-C does: whatever handles SIGINT at
    # this moment (the running loop's graceful stop, or KeyboardInterrupt
    # before and after it) handles this one too.
    signal.raise_signal(signal.SIGINT)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (usage errors exit)."""
    # Ctrl-C works even when started with SIGINT ignored (``cmd &`` in a
    # script, where smtpd could then only be killed).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _terminate)
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)
    try:
        options = parseargs(argv)
        try:
            cls = server_class(options.classname)
            try:
                cls((options.localhost, options.localport), (options.remotehost, options.remoteport),
                    options.size_limit, enable_SMTPUTF8=options.enable_SMTPUTF8)
            except (OSError, ValueError) as err:  # bind, resolve, or the class refusing its arguments
                _fail(f"Cannot start {cls.__name__} on {options.localhost}:{options.localport}: {err}")
        except smtpd.ChannelNotSupported as err:  # at the import of the user's module, or made
            _fail(str(err))
        if options.setuid:
            _preload(cls)
            become_nobody()
        smtpd.loop()
    except KeyboardInterrupt:
        pass
    return 0
