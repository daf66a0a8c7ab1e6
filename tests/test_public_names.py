"""The public surface: every module says what it exports, and what the API hands out can be imported.

Four checks. Every module declares ``__all__`` and every name in it exists.
Every mailwire class that the public API takes or returns (the annotations of
the public methods, functions and fields of what ``mailwire``,
``mailwire.server`` and ``mailwire.testing`` export) is exported from one of
the documented homes: ``mailwire``, ``mailwire.server``, ``mailwire.protocol``
(the core, for driver authors) or ``mailwire.testing``. And the README (and
``docs/``) name only what exists and is exported: its code imports exported
names of a public module, and a dotted ``mailwire.x.y`` in its prose
resolves. The drop-ins
(``mailwire.smtplib``, ``mailwire.smtpd``) keep the standard library's
``__all__`` on purpose, so for them a documented name need only exist.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
import typing
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import mailwire
import mailwire.inbox
import mailwire.protocol
import mailwire.server
import mailwire.testing
from mailwire.server.connection import SMTPConnection

PACKAGE_ROOT = Path(mailwire.__file__).parent
REPO = PACKAGE_ROOT.parents[1]
HOMES = (mailwire, mailwire.server, mailwire.protocol, mailwire.testing, mailwire.inbox)
DROP_INS = {"mailwire.smtplib", "mailwire.smtpd"}
# Where the README may take a name from. Any module may be named as such
# (a logger, say), but not a name from one outside these.
PUBLIC_MODULES = {home.__name__ for home in HOMES} | DROP_INS | {"mailwire.django"}
# The client half of issue 11 (another branch) mends these: client/__init__
# gets its __all__, and Transaction, which AsyncSMTPClient.transact takes,
# is exported from mailwire. Listed so that their owner removes them, and so
# that anything else still fails.
CLIENT_SIDE_PENDING = {"client/__init__.py", "mailwire.client.dialog.Transaction"}


def _modules() -> list[Path]:
    return sorted(PACKAGE_ROOT.rglob("*.py"))


def _declares_all(source: str) -> bool:
    for node in ast.parse(source).body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
            node, ast.AnnAssign) else []
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            return True
    return False


def test_every_module_declares_all() -> None:
    missing = [
        path.relative_to(PACKAGE_ROOT).as_posix() for path in _modules()
        if path.relative_to(PACKAGE_ROOT).as_posix() not in CLIENT_SIDE_PENDING
        and not _declares_all(path.read_text(encoding="utf-8"))
    ]
    assert len(_modules()) > 50
    assert missing == []


@pytest.mark.parametrize("source, declares", [
    ("__all__ = ['a']", True),
    ("__all__: list[str] = []", True),
    ("x = 1\ndef f():\n    __all__ = []", False),
    ('"""doc"""\nimport os', False),
])
def test_the_all_checker(source: str, declares: bool) -> None:
    assert _declares_all(source) is declares


def _importable() -> Iterator[str]:
    for info in pkgutil.walk_packages(mailwire.__path__, "mailwire."):
        if info.name != "mailwire.__main__":  # running it is the command line
            yield info.name


def test_every_name_in_all_exists() -> None:
    missing = []
    for name in _importable():
        try:
            module = importlib.import_module(name)
        except ImportError as err:  # mailwire.django without Django: test_layering's concern
            assert name == "mailwire.django", err
            continue
        missing += [f"{name}.{n}" for n in getattr(module, "__all__", ()) if not hasattr(module, n)]
    assert missing == []


# -- the types the public API hands out are importable from a public home --------------------

# SMTPServer's connection bookkeeping is called by its own connections
# (server/connection.py), never by an application: the connection type it
# takes is the driver's, not the API's.
DRIVER_CALLBACKS = {"SMTPServer.accept", "SMTPServer.admit", "SMTPServer.admit_client", "SMTPServer.release"}


def _classes_in(hint: Any, found: set[type]) -> None:
    if isinstance(hint, type):
        found.add(hint)
    origin = typing.get_origin(hint)
    if isinstance(origin, type):
        found.add(origin)
    for arg in typing.get_args(hint):
        _classes_in(arg, found)


def _public_namespace() -> dict[str, Any]:
    # Annotations are strings (PEP 563); names imported only under
    # TYPE_CHECKING resolve through the public names.
    return {name: getattr(home, name) for home in HOMES for name in home.__all__}


def _hints(obj: Any) -> dict[str, Any]:
    return typing.get_type_hints(obj, localns=_public_namespace())


def _api() -> Iterator[tuple[str, Any]]:
    """(where, object whose annotations are API) for every exported callable and class."""
    for home in (mailwire, mailwire.server, mailwire.testing):
        for name in home.__all__:
            obj = getattr(home, name)
            if inspect.isfunction(obj):
                yield f"{home.__name__}.{name}", obj
            elif inspect.isclass(obj):
                yield f"{name} (fields)", obj
                for attr, value in vars(obj).items():
                    if attr.startswith("_") and attr != "__init__":
                        continue
                    value = value.fget if isinstance(value, property) else value
                    value = value.__func__ if isinstance(value, (staticmethod, classmethod)) else value
                    if inspect.isfunction(value) and f"{name}.{attr}" not in DRIVER_CALLBACKS:
                        yield f"{name}.{attr}", value


def _unexported(api: list[tuple[str, Any]]) -> dict[str, set[str]]:
    exported = {id(getattr(home, name)) for home in HOMES for name in home.__all__}
    unexported: dict[str, set[str]] = {}
    for where, obj in api:
        found: set[type] = set()
        for hint in _hints(obj).values():
            _classes_in(hint, found)
        for cls in found:
            if cls.__module__.split(".")[0] == "mailwire" and id(cls) not in exported:
                unexported.setdefault(f"{cls.__module__}.{cls.__qualname__}", set()).add(where)
    return unexported


def test_every_type_the_api_hands_out_is_exported() -> None:
    api = list(_api())
    assert len(api) > 100  # the clients, the server, its contract, the backends: not an empty walk
    unexported = _unexported(api)
    assert {name: where for name, where in unexported.items() if name not in CLIENT_SIDE_PENDING} == {}


def test_the_export_checker_finds_an_unexported_type() -> None:
    def takes(connection: SMTPConnection) -> mailwire.Reply:
        raise NotImplementedError

    assert _unexported([("takes", takes)]) == {"mailwire.server.connection.SMTPConnection": {"takes"}}


# -- the README names only what is exported --------------------------------------------------

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
_CODE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
_DOTTED = re.compile(r"`[^`\n]*?\b(mailwire(?:\.[A-Za-z_]\w*)+)")


def _resolve(dotted: str) -> str | None:
    """Why ``dotted`` (``mailwire.a.b``) is not a public name, or None if it is."""
    parts = dotted.split(".")
    module: ModuleType | None = None
    i = len(parts)
    while i:
        try:
            module = importlib.import_module(".".join(parts[:i]))
            break
        except ImportError:
            i -= 1
    assert module is not None
    rest = parts[i:]
    if not rest:
        return None
    if not hasattr(module, rest[0]):
        return f"{module.__name__} has no {rest[0]}"
    if inspect.ismodule(getattr(module, rest[0])) and len(rest) == 1:
        return None  # a module, named as such
    if module.__name__ not in PUBLIC_MODULES:
        return f"{dotted}: {module.__name__} is not a public module"
    if module.__name__ not in DROP_INS and rest[0] not in getattr(module, "__all__", ()):
        return f"{rest[0]} is not in {module.__name__}.__all__"
    obj = getattr(module, rest[0])
    for attr in rest[1:]:
        if not hasattr(obj, attr):
            return f"{dotted}: no {attr}"
        obj = getattr(obj, attr)
    return None


def _names_in_code(code: str) -> Iterator[str]:
    """The dotted mailwire names a Python example uses."""
    tree = ast.parse(code)
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "mailwire":
                    yield alias.name
                    aliases[alias.asname or alias.name.split(".")[0]] = alias.name if alias.asname else "mailwire"
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "mailwire":
            yield from (f"{node.module}.{alias.name}" for alias in node.names)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
            yield f"{aliases[node.value.id]}.{node.attr}"


def _documented() -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for block in _CODE.findall(text):
            found += [(doc.name, name) for name in _names_in_code(block)]
        prose = _CODE.sub("", text)
        found += [(doc.name, name) for name in _DOTTED.findall(prose)]
    return found


def test_the_readme_names_only_exported_things() -> None:
    pytest.importorskip("django")  # the README documents mailwire.django.EmailBackend
    documented = _documented()
    assert len(documented) > 20
    wrong = sorted({f"{doc}: {why}" for doc, name in documented if (why := _resolve(name)) is not None})
    assert wrong == []


@pytest.mark.parametrize("code, name, ok", [
    ("from mailwire.server import SMTPServer", "mailwire.server.SMTPServer", True),
    ("from mailwire.server.connection import SMTPConnection", "mailwire.server.connection.SMTPConnection", False),
    ("import mailwire\nmailwire.SMTPClient('h')", "mailwire.SMTPClient", True),
    ("import mailwire\nmailwire.ClientBase", "mailwire.ClientBase", False),
    ("import mailwire.smtplib as smtplib\nsmtplib.SMTP", "mailwire.smtplib.SMTP", True),
    ("from mailwire.server import handlers", "mailwire.server.handlers", False),
])
def test_the_readme_checker(code: str, name: str, ok: bool) -> None:
    assert name in list(_names_in_code(code))
    assert (_resolve(name) is None) is ok


def test_the_console_script_is_the_command_line() -> None:
    text = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    match = re.search(r'^\[project\.scripts\]\nmailwire = "([\w.]+):(\w+)"$', text, re.M)
    assert match, "pyproject.toml names the mailwire command"
    module = importlib.import_module(match.group(1))
    from mailwire.cli.main import main

    assert getattr(module, match.group(2)) is main
