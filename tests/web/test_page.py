"""The web inbox page's files: served from the package's data, under a strict CSP.

What the page does is proved in a browser (``test_page_browser.py``); here,
without one, that its files ship in the package and are served as a page
that may run only its own scripts.
"""

from __future__ import annotations

import importlib.resources
import re

from .conftest import Catching


def _policy(header: str) -> dict[str, str]:
    return {d.split()[0]: " ".join(d.split()[1:]) for d in (p.strip() for p in header.split(";")) if d}


def test_the_page_and_every_file_it_names_ship_as_package_data() -> None:
    static = importlib.resources.files("mailwire.web").joinpath("static")
    page = static.joinpath("index.html").read_text(encoding="utf-8")
    named = set(re.findall(r'(?:src|href)="/static/([^"]+)"', page))
    assert {"main.js", "inbox.css"} <= named
    for name in named:
        assert static.joinpath(name).is_file(), name
    for module in (n for n in named if n.endswith(".js")):  # and the modules those import
        for imported in re.findall(r'from "\./([^"]+)"', static.joinpath(module).read_text(encoding="utf-8")):
            assert static.joinpath(imported).is_file(), imported
    assert "<script>" not in page and "onclick" not in page.lower()  # nothing inline: the CSP would refuse it


def test_the_page_is_served_under_a_strict_csp(catcher: Catching) -> None:
    page = catcher.get("/")
    assert page.status == 200 and page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert b'<script type="module" src="/static/main.js">' in page.body
    policy = _policy(page.headers["Content-Security-Policy"])
    assert policy["default-src"] == "'none'" and policy["script-src"] == "'self'"
    assert policy["connect-src"] == "'self'" and policy["frame-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'" and policy["form-action"] == "'none'"
    assert "unsafe" not in page.headers["Content-Security-Policy"]
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    script = catcher.get("/static/main.js")
    assert script.status == 200 and script.headers["Content-Type"].startswith("text/javascript")
    assert catcher.get("/static/inbox.css").headers["Content-Type"].startswith("text/css")
    for missing in ("/static/nothing.js", "/static/..%2Fpage.py", "/static/.hidden"):
        assert catcher.get(missing).status == 404, missing
