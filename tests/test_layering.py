"""The sans-I/O core imports no I/O module: socket, ssl, asyncio, selectors.

Two checks. The firm one reads source: every module under
``mailwire/protocol`` and every mailwire module they import (followed
transitively) is parsed, and no import statement, ``__import__`` or
``importlib.import_module`` call may name a forbidden module. The second
imports ``mailwire.protocol`` in a fresh interpreter and checks that none of
the forbidden modules appeared in ``sys.modules`` because of it (whatever the
interpreter loaded at startup is excused: that is not our doing).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import mailwire

FORBIDDEN = {"socket", "ssl", "asyncio", "selectors", "_socket", "_ssl", "_asyncio"}
PACKAGE_ROOT = Path(mailwire.__file__).parent
PROTOCOL = PACKAGE_ROOT / "protocol"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _module_path(name: str) -> Path | None:
    rel = Path(*name.split("."))
    for candidate in (PACKAGE_ROOT.parent / rel / "__init__.py", PACKAGE_ROOT.parent / rel.with_suffix(".py")):
        if candidate.exists():
            return candidate
    return None


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path, *, runtime_only: bool, package: str | None = None) -> list[tuple[str, int]]:
    """Absolute names of every module ``path`` imports, with line numbers
    (relative imports resolved in ``package``, by default the one it is in)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    if package is None and PACKAGE_ROOT.parent not in path.parents:
        package = ""
    if package is None:
        package = _module_name(path)
        if path.name != "__init__.py":
            package = package.rpartition(".")[0]
    skip: set[int] = set()
    if runtime_only:
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and _is_type_checking(node):
                skip.update(id(n) for child in node.body for n in ast.walk(child))
    found: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            found.append((prefix, node.lineno))
            # "from . import x" / "from .pkg import mod" may name submodules.
            found += [(f"{prefix}.{alias.name}", node.lineno) for alias in node.names if alias.name != "*"]
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            if name in ("__import__", "import_module") and node.args:
                arg = node.args[0]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    found.append((arg.value, node.lineno))
                else:
                    found.append(("<dynamic import>", node.lineno))
    return found


def _core_closure() -> dict[Path, list[tuple[str, int]]]:
    """Every mailwire module the core loads at runtime, with its imports."""
    todo = sorted(PROTOCOL.glob("*.py"))
    seen: dict[Path, list[tuple[str, int]]] = {}
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        in_core = PROTOCOL in path.parents
        # Inside the core even type-only imports count; outside it only what runs.
        seen[path] = _imports(path, runtime_only=not in_core)
        for name, _ in _imports(path, runtime_only=True):
            if name.split(".")[0] == "mailwire":
                parts = name.split(".")
                # Importing a.b.c runs a/__init__, a/b/__init__ and a/b/c. The
                # top-level mailwire/__init__ (public re-exports) is left to the
                # subprocess test below; here we follow what the core names.
                for i in range(2, len(parts) + 1):
                    target = _module_path(".".join(parts[:i]))
                    if target is not None and target not in seen:
                        todo.append(target)
    return seen


def test_core_files_exist() -> None:
    names = {p.name for p in PROTOCOL.glob("*.py")}
    assert {"__init__.py", "client.py", "buffer.py", "data.py", "state.py", "commands.py"} <= names


def test_no_io_imports_in_the_core_source() -> None:
    closure = _core_closure()
    # The closure reaches outside protocol/ (errors, reply, limits) and is not trivial.
    assert any(PROTOCOL not in p.parents for p in closure)
    offences = [
        f"{path.relative_to(PACKAGE_ROOT.parent)}:{line}: imports {name}"
        for path, imports in sorted(closure.items())
        for name, line in imports
        if name == "<dynamic import>" or name.split(".")[0] in FORBIDDEN
    ]
    assert offences == []


@pytest.mark.parametrize(
    "source",
    [
        "import socket",
        "import asyncio.streams",
        "from ssl import SSLContext",
        "import os, selectors",
        "def f():\n    import socket",
        "__import__('ssl')",
        "import importlib\nimportlib.import_module('asyncio')",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import ssl",
    ],
)
def test_the_checker_catches_offences(tmp_path: Path, source: str) -> None:
    fake = tmp_path / "mod.py"
    fake.write_text(source)
    names = {name.split(".")[0] for name, _ in _imports(fake, runtime_only=False)}
    assert names & FORBIDDEN


def test_importing_the_core_loads_no_io_module() -> None:
    script = textwrap.dedent(
        """
        import json, sys
        before = set(sys.modules)
        import mailwire.protocol
        import mailwire.protocol.client, mailwire.protocol.data, mailwire.protocol.commands
        loaded = set(sys.modules) - before
        print(json.dumps({"before": sorted(before), "loaded": sorted(loaded)}))
        """
    )
    result = subprocess.run(
        [sys.executable, "-I", "-c", script], capture_output=True, text=True, check=True, timeout=60,
    )
    report = json.loads(result.stdout)
    loaded = set(report["loaded"])
    assert "mailwire.protocol.client" in loaded  # the import really happened here
    newly = {m for m in loaded if m.split(".")[0] in FORBIDDEN}
    assert newly == set(), f"importing mailwire.protocol loaded {sorted(newly)}"


# -- the drop-ins are adapters: the core's public API only ----------------------
#
# ``mailwire.smtplib`` is built on the client and the core's public surface
# (``mailwire.protocol.__all__``), never on the core's modules one by one: an
# adapter that reaches into ``protocol/state.py`` or ``commands.py`` is a
# second engine in the making.

DROP_INS = [PACKAGE_ROOT / "smtplib.py"]


def _protocol_imports(path: Path, package: str | None = None) -> list[tuple[str, int]]:
    """What ``path`` (a module of ``package``, by default the one it is in)
    imports from the core, as ``(what, line)``: a submodule
    (``mailwire.protocol.state``) or a name (``mailwire.protocol:DotStuffer``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    if package is None:
        package = _module_name(path).rpartition(".")[0]
    found: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names if a.name.startswith("mailwire.protocol")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module == "mailwire":
                found += [(f"mailwire.{a.name}", node.lineno) for a in node.names if a.name == "protocol"]
            elif module == "mailwire.protocol":
                found += [(f"mailwire.protocol:{a.name}", node.lineno) for a in node.names]
            elif module.startswith("mailwire.protocol."):
                found.append((module, node.lineno))
    return found


def _internal(what: str) -> bool:
    from mailwire import protocol

    if ":" in what:
        return what.partition(":")[2] not in protocol.__all__
    return what != "mailwire.protocol"


@pytest.mark.parametrize("path", DROP_INS, ids=lambda p: p.name)
def test_the_drop_ins_use_only_the_cores_public_api(path: Path) -> None:
    imports = _protocol_imports(path)
    assert imports, "the drop-in uses the core"  # the check below has something to check
    offences = [f"{path.name}:{line}: imports {what}" for what, line in imports if _internal(what)]
    assert offences == []


@pytest.mark.parametrize(
    "source, internal",
    [
        ("from .protocol import DotStuffer", False),
        ("from .protocol import ClientState, RawCommand", False),
        ("from .protocol.state import CLIENT_SEND", True),
        ("from .protocol.commands import format_command", True),
        ("from .protocol import CLIENT_SEND", True),
        ("import mailwire.protocol.state", True),
        ("from mailwire.protocol.data import stuff", True),
    ],
)
def test_the_drop_in_checker_catches_internals(tmp_path: Path, source: str, internal: bool) -> None:
    fake = tmp_path / "dropin.py"
    fake.write_text(source)
    found = _protocol_imports(fake, package="mailwire")
    assert found and any(_internal(what) for what, _ in found) is internal


# -- values sit at the bottom ---------------------------------------------------
#
# The exceptions, ``Reply``, ``Limits`` and ``SendResult`` are values every
# layer uses; they import nothing of mailwire above them (an error carrying a
# ``SendResult`` imports it from ``result.py``, not from the client).

VALUES = {"mailwire.errors", "mailwire.reply", "mailwire.limits", "mailwire.result"}


@pytest.mark.parametrize("name", sorted(VALUES))
def test_values_import_nothing_above_them(name: str) -> None:
    path = _module_path(name)
    assert path is not None
    found = [
        f"{name}:{line}: imports {imported}" for imported, line in _imports(path, runtime_only=False)
        if imported.split(".")[0] == "mailwire" and imported not in VALUES
        and imported.rpartition(".")[0] not in VALUES  # "from .reply import Reply" names mailwire.reply.Reply
    ]
    assert found == []


# -- Django stays optional ---------------------------------------------------------


def test_only_mailwire_django_imports_django() -> None:
    """Django is an optional extra (``mailwire[django]``): one module may
    import it, and nothing in mailwire may import that module."""
    offences = []
    for path in sorted(PACKAGE_ROOT.rglob("*.py")):
        for name, line in _imports(path, runtime_only=False):
            where = f"{path.relative_to(PACKAGE_ROOT.parent)}:{line}"
            if name.split(".")[0] == "django" and path != PACKAGE_ROOT / "django.py":
                offences.append(f"{where}: imports {name}")
            if name == "mailwire.django" and path != PACKAGE_ROOT / "django.py":
                offences.append(f"{where}: imports mailwire.django")
    assert offences == []


def test_mailwire_imports_without_django() -> None:
    # A fresh interpreter where ``import django`` fails: every other module loads.
    script = textwrap.dedent(
        """
        import importlib, pkgutil, sys
        sys.modules["django"] = None  # an ImportError for anyone who tries
        import mailwire
        names = [m.name for m in pkgutil.walk_packages(mailwire.__path__, "mailwire.")
                 if m.name not in ("mailwire.django", "mailwire.__main__")]
        for name in names:
            importlib.import_module(name)
        for name in ("SMTPClient", "AsyncSMTPClient", "SMTPPool", "LMTPClient"):
            getattr(mailwire, name)
        try:
            import mailwire.django
        except ImportError as err:
            print(len(names), "ok;", err)
        """
    )
    result = subprocess.run(
        [sys.executable, "-I", "-c", script], capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert " ok; " in result.stdout and int(result.stdout.split()[0]) > 20


# -- the web stack stays an extra ----------------------------------------------------------------


WEB_STACK = {"aiohttp", "nh3"}


def test_only_web_and_cli_import_the_web_stack() -> None:
    """aiohttp and nh3 are the ``web`` extra: only ``mailwire/web/`` imports
    them (``cli/`` may, to run it), and nothing but ``cli/`` imports ``web/``."""
    offences = []
    for path in sorted(PACKAGE_ROOT.rglob("*.py")):
        part = _part(_module_name(path))
        for name, line in _imports(path, runtime_only=False):
            where = f"{path.relative_to(PACKAGE_ROOT.parent)}:{line}"
            if name.split(".")[0] in WEB_STACK and part not in ("web", "cli"):
                offences.append(f"{where}: imports {name}")
            if name.startswith("mailwire.web") and part not in ("web", "cli"):
                offences.append(f"{where}: imports {name}")
    assert offences == []


def test_mailwire_and_its_cli_import_without_the_web_stack() -> None:
    # A fresh interpreter where aiohttp and nh3 fail to import: every module but web/'s loads.
    script = textwrap.dedent(
        """
        import importlib, pkgutil, sys
        sys.modules["aiohttp"] = sys.modules["nh3"] = None
        import mailwire
        names = [m.name for m in pkgutil.walk_packages(mailwire.__path__, "mailwire.")
                 if not m.name.startswith("mailwire.web.") and m.name not in ("mailwire.django", "mailwire.__main__")]
        for name in names:
            importlib.import_module(name)
        try:
            import mailwire.web.app
        except ImportError:
            print(len(names), "ok")
        """
    )
    result = subprocess.run([sys.executable, "-I", "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[1:] == ["ok"] and int(result.stdout.split()[0]) > 20


# -- Redis stays an extra ------------------------------------------------------------------------


def test_only_the_redis_broker_imports_redis() -> None:
    """redis is the ``redis`` extra: one module (``queue/redis_broker.py``)
    imports it, and only the CLI may import that module, so the queue's
    entries, broker protocol and blobs load without it."""
    broker = PACKAGE_ROOT / "queue" / "redis_broker.py"
    offences = []
    for path in sorted(PACKAGE_ROOT.rglob("*.py")):
        for name, line in _imports(path, runtime_only=False):
            where = f"{path.relative_to(PACKAGE_ROOT.parent)}:{line}"
            if name.split(".")[0] == "redis" and path != broker:
                offences.append(f"{where}: imports {name}")
            if name == "mailwire.queue.redis_broker" and _part(_module_name(path)) != "cli":
                offences.append(f"{where}: imports mailwire.queue.redis_broker")
    assert any(name.split(".")[0] == "redis" for name, _ in _imports(broker, runtime_only=False))
    assert offences == []


def test_the_queue_imports_without_redis() -> None:
    script = textwrap.dedent(
        """
        import sys
        sys.modules["redis"] = None
        import mailwire.queue, mailwire.queue.entry, mailwire.queue.broker, mailwire.queue.blobs
        print(mailwire.queue.Broker.__name__)
        """
    )
    result = subprocess.run([sys.executable, "-I", "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["Broker"]


# -- boto3 stays an extra ------------------------------------------------------------------------


def test_only_the_s3_blob_store_imports_boto3() -> None:
    """boto3 is the ``s3`` extra: one module (``queue/s3_blobs.py``) imports
    it (and botocore), and only the CLI may import that module."""
    store = PACKAGE_ROOT / "queue" / "s3_blobs.py"
    offences = []
    for path in sorted(PACKAGE_ROOT.rglob("*.py")):
        for name, line in _imports(path, runtime_only=False):
            where = f"{path.relative_to(PACKAGE_ROOT.parent)}:{line}"
            if name.split(".")[0] in ("boto3", "botocore") and path != store:
                offences.append(f"{where}: imports {name}")
            if name == "mailwire.queue.s3_blobs" and _part(_module_name(path)) != "cli":
                offences.append(f"{where}: imports mailwire.queue.s3_blobs")
    assert any(name.split(".")[0] == "boto3" for name, _ in _imports(store, runtime_only=False))
    assert offences == []


def test_the_queue_and_its_cli_import_without_boto3() -> None:
    script = textwrap.dedent(
        """
        import sys
        sys.modules["boto3"] = sys.modules["botocore"] = None
        import mailwire.queue, mailwire.queue.blobs, mailwire.cli.queue_blobs, mailwire.cli.worker
        print(mailwire.queue.DirectoryBlobs.__name__)
        """
    )
    result = subprocess.run([sys.executable, "-I", "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["DirectoryBlobs"]


# -- the layout: each part imports only what sits below it -------------------------------------
#
# Bottom to top: the values (errors, reply, limits, sasl), which every part
# uses; protocol/, the sans-I/O core; _aio/, the asyncio plumbing both drivers
# share; client/ and server/, the drivers, which do not know each other,
# except that a backend (server/backends/: Relay) may use the client; the
# adapters and helpers (smtplib, smtpd, testing, pytest_plugin, django); and
# cli/, the command lines, at the top: only ``python -m mailwire``
# (__main__) and ``python -m mailwire.smtpd`` (smtpd's __main__ block) import
# it. Type-only imports count: a TYPE_CHECKING import couples two parts as
# much as any. The package root (``mailwire/__init__``, the public names,
# drivers included) is above every part of the library: it imports them.

ADAPTERS = {"smtplib", "smtpd", "testing", "_testing", "pytest_plugin", "django", "django_sending"}
_ABOVE_THE_LIBRARY = {"cli", "mailwire"} | ADAPTERS  # "mailwire": a name from the package root
LAYOUT_RULES = {
    # part: (what it may not import, why)
    "protocol": ({"_aio", "client", "server", "server.backends"} | _ABOVE_THE_LIBRARY,
                 "the sans-I/O core knows no driver"),
    "_aio": ({"client", "server", "server.backends"} | _ABOVE_THE_LIBRARY,
             "the plumbing under both drivers knows neither"),
    "client": ({"server", "server.backends"} | _ABOVE_THE_LIBRARY, "the client knows no server"),
    "server": ({"client"} | _ABOVE_THE_LIBRARY, "only a backend (server/backends/) may use the client"),
    "server.backends": (_ABOVE_THE_LIBRARY, "backends are part of the library"),
    # The catcher's store: its backend builds on the server's Maildir; the web
    # layer (web/, an extra) builds on it, never the reverse.
    "inbox": ({"client", "web"} | _ABOVE_THE_LIBRARY, "the store knows no HTTP and no client"),
    # The web inbox (an extra): on the inbox and the server's values, below the CLI that runs it.
    "web": ({"client"} | _ABOVE_THE_LIBRARY, "the web layer builds on the inbox, below the CLI"),
    # The durable queue: on the server's values and stores (its workers deliver
    # through the client's pools), below the CLI; no HTTP, no catcher.
    "queue": ({"web", "inbox"} | _ABOVE_THE_LIBRARY, "the queue knows no HTTP and no catcher, below the CLI"),
}
CLI_ENTRIES = {"mailwire.__main__", "mailwire.smtpd"}  # the two that may import cli/


def _part(module: str) -> str:
    """Which part of the layout a module (or a name in one) is in."""
    parts = module.split(".")
    if len(parts) == 1 or _module_path(".".join(parts[:2])) is None:
        return "mailwire"  # the package root, or a name it exports
    if parts[1] == "server" and parts[2:3] == ["backends"]:
        return "server.backends"
    return parts[1]


def _layout_offences(module: str, imports: list[tuple[str, int]]) -> list[str]:
    forbidden, why = LAYOUT_RULES.get(_part(module), (set(), ""))
    offences = []
    for name, line in imports:
        if name == "<dynamic import>":
            if forbidden:
                offences.append(f"{module}:{line}: a dynamic import, which the layout cannot check")
            continue
        if name.split(".")[0] != "mailwire" or name == "mailwire":
            continue  # not ours; or "from . import x", whose x is checked on its own
        part = _part(name)
        if part in forbidden:
            reason = (
                "the package root, which imports every part" if part == "mailwire"
                else "an adapter, above the library" if part in ADAPTERS
                else "cli/ is the top" if part == "cli" else why
            )
            offences.append(f"{module}:{line}: imports {name} ({reason})")
        elif part == "cli" and _part(module) != "cli" and module not in CLI_ENTRIES:
            offences.append(f"{module}:{line}: imports {name} (cli/ is the top: nothing imports it)")
    return offences


def test_each_part_imports_only_what_sits_below_it() -> None:
    parts: set[str] = set()
    offences = []
    for path in sorted(PACKAGE_ROOT.rglob("*.py")):
        module = _module_name(path)
        parts.add(_part(module))
        offences += _layout_offences(module, _imports(path, runtime_only=False))
    assert set(LAYOUT_RULES) | {"cli"} <= parts  # every part of the layout is there to check
    assert offences == []


@pytest.mark.parametrize(
    "module, source",
    [
        ("mailwire.protocol.server", "from ..client.sync import SMTPClient"),
        ("mailwire.protocol.server", "from .._aio.deadline import Deadline"),
        ("mailwire.protocol.state", "from .. import SMTPClient"),
        ("mailwire.protocol", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..server import Envelope"),
        ("mailwire._aio.flow", "import mailwire.server.connection"),
        ("mailwire._aio.reading", "from ..client import aio"),
        ("mailwire.client.pool", "from ..server.envelope import Envelope"),
        ("mailwire.client.sync", "from ..server.backends import Sink"),
        ("mailwire.server.policy", "from ..client.aio import AsyncSMTPClient"),
        ("mailwire.server.aio", "from ..testing import ServerThread"),
        ("mailwire.server.backends.relay", "from ...cli.serve import plan"),
        ("mailwire.testing", "from .cli.main import main"),
        ("mailwire.inbox.store", "from ..web.api import routes"),
        ("mailwire.inbox.index", "from ..cli.serve import plan"),
        ("mailwire.inbox.backend", "from ..client.sync import SMTPClient"),
        ("mailwire.web.app", "from ..cli.serve_run import Plan"),
        ("mailwire.web.serve", "from .. import Inbox"),
        ("mailwire.queue.entry", "from ..web.app import make_app"),
        ("mailwire.queue.blobs", "from ..cli.serve import plan"),
        ("mailwire.queue.broker", "from .. import SMTPClient"),
        ("mailwire.server.connection", "import importlib\nimportlib.import_module('mailwire.cli')"),
    ],
)
def test_the_layout_checker_catches_offences(tmp_path: Path, module: str, source: str) -> None:
    fake = tmp_path / "mod.py"
    fake.write_text(source)
    package = module if _module_path(module) is not None and _module_path(module).name == "__init__.py" \
        else module.rpartition(".")[0]
    assert _layout_offences(module, _imports(fake, runtime_only=False, package=package)) != []


@pytest.mark.parametrize(
    "module, source",
    [
        ("mailwire.server.backends.relay", "from ...client.aio import AsyncSMTPClient"),
        ("mailwire.server.connection", "from .._aio.flow import FlowControl\nfrom ..protocol import events"),
        ("mailwire.client.aio", "from .._aio.deadline import Deadline"),
        ("mailwire.smtpd", "from mailwire.cli.smtpd import main"),
        ("mailwire.cli.serve", "from ..server.backends import Sink\nfrom ..client.sync import TLSMode"),
        ("mailwire.inbox.backend", "from ..server.backends.maildir import Maildir\nfrom .store import Inbox"),
        ("mailwire.queue.blobs", "from ..server.backends.store import fsync_directory\nfrom .entry import is_queue_id"),
        ("mailwire.queue.entry", "from ..server.envelope import Envelope, SessionInfo"),
    ],
)
def test_the_layout_checker_lets_the_layout_be(tmp_path: Path, module: str, source: str) -> None:
    fake = tmp_path / "mod.py"
    fake.write_text(source)
    assert _layout_offences(module, _imports(fake, runtime_only=False, package=module.rpartition(".")[0])) == []


# -- reply codes: protocol, or a backend's own policy -------------------------------------------
#
# The rule. A reply code written as a literal (``Reply(550, ...)``,
# ``Reply.of(550, ...)``, ``Reply.parse("550 ...")``, ``SMTPError(550, ...)``,
# ``RemoteProtocolError(..., Reply.of(...))``) is a protocol decision, and the
# protocol's decisions live in one place: ``protocol/``, ``reply.py`` (the
# standard replies, by name, for drivers to use) and the two value modules the
# core builds on, ``sasl.py`` (the SASL exchanges the core runs) and
# ``errors.py`` (the default reply of a RemoteProtocolError). Everywhere else a
# reply is one of reply.py's names or a Reply handed along, except in a
# backend: a module implementing the Backend contract refuses with its own
# codes (``SMTPError(550, "5.1.1", "No such user")``, design rule 4), which
# is policy, not protocol. The sanctioned backends are the shipped ones
# (``server/backends/``), the smtpd drop-in's (``smtpd.py``) and the queue's
# front end (``queue/handoff.py``). A server driver (connection, policy,
# auth) or the CLI never writes a code.

PROTOCOL_HOMES = {"protocol", "reply.py", "sasl.py", "errors.py"}
BACKENDS = {"server/backends/", "smtpd.py", "queue/handoff.py"}  # a folder ends in "/"
_REPLY_MAKERS = {"Reply", "SMTPError", "RemoteProtocolError", "Reply.of", "Reply.parse", "Reply.from_lines"}


def _callee(func: ast.expr) -> str:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        return f"{func.value.id}.{func.attr}"
    return ""


def _literal_codes(source: str) -> list[int]:
    """Lines where a reply is made from a literal code."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call) or _callee(node.func) not in _REPLY_MAKERS or not node.args:
            continue
        first = node.args[0]
        if isinstance(first, ast.Constant) and (
            isinstance(first.value, int) and not isinstance(first.value, bool)
            or isinstance(first.value, str) and first.value[:3].isdigit()
        ):
            found.append(node.lineno)
    return found


def test_reply_codes_are_written_only_where_the_protocol_or_a_backend_decides() -> None:
    offences = []
    checked = 0
    for path in sorted(PACKAGE_ROOT.rglob("*.py")):
        name = path.relative_to(PACKAGE_ROOT).as_posix()
        if name.split("/")[0] in PROTOCOL_HOMES or name.startswith(tuple(BACKENDS)):
            continue
        checked += 1
        offences += [f"{name}:{line}" for line in _literal_codes(path.read_text(encoding="utf-8"))]
    assert checked > 20  # the server side, the CLI, the clients: not an empty walk
    assert offences == [], "reply codes outside protocol/ and reply.py (see the rule above)"


def test_the_protocol_homes_and_backends_do_write_codes() -> None:
    """The exemptions are real: each home of the rule holds literal codes."""
    for name in ("protocol/server.py", "reply.py", "server/backends/relay.py", "server/backends/store.py", "smtpd.py"):
        assert _literal_codes((PACKAGE_ROOT / name).read_text(encoding="utf-8")), name


@pytest.mark.parametrize("source", [
    "Reply.of(530, '5.7.0', 'Authentication required')",
    "raise SMTPError(535, '5.7.8', 'no')",
    "Reply(250, ('ok',))",
    "Reply.parse('550 5.1.1 No such user')",
])
def test_the_reply_code_checker_catches_offences(source: str) -> None:
    assert _literal_codes(source) == [1]
    assert _literal_codes("raise SMTPError(AUTH_FAILED)\nReply.of(code, None, text)") == []


# -- the inbox reads mail without an event loop ---------------------------------------
#
# Reading a stored message, its index and a query (mime, summary, query,
# index) is plain blocking code over files and SQLite: usable from any
# thread, a command line or a test helper in another process. Only the
# Inbox (its ``arrivals``, an async iterator) and the catcher backend (a
# server session) know asyncio, and only the backend knows the server.

INBOX_PLAIN = ("mime", "summary", "query", "index")


@pytest.mark.parametrize("name", INBOX_PLAIN)
def test_the_inbox_reads_mail_without_io_drivers(name: str) -> None:
    path = PACKAGE_ROOT / "inbox" / f"{name}.py"
    offences = [
        f"inbox/{name}.py:{line}: imports {imported}" for imported, line in _imports(path, runtime_only=False)
        if imported.split(".")[0] in FORBIDDEN
        or (imported.split(".")[0] == "mailwire" and not imported.startswith("mailwire.inbox"))
    ]
    assert offences == []
