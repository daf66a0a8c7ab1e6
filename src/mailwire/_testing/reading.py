"""The text a test reads in a message body, and the links it follows.

An HTML body is read with the standard library's ``html.parser`` (lenient:
it never raises on bad markup), once, for both its text (block elements
become line breaks, so a code on a line of its own stays apart from its
neighbours; scripts, styles and the head are not text) and its links (the
``href`` of ``<a>`` and ``<area>``, entities decoded, as the parser does for
every attribute). A text body's links are its bare URLs. Only absolute
``http``/``https`` links count: ``mailto:``, ``tel:``, fragments and
relative links are not something a sign-up test follows.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from html.parser import HTMLParser

__all__ = ["HTMLReading", "read_html", "bare_urls", "unique_links", "URL"]

# A bare URL: up to white space, a quote or an angle bracket (the <URL> form).
URL = re.compile(r"""https?://[^\s<>"'`]+""", re.IGNORECASE)
_TRAILING = ".,;:!?'\"*_"  # punctuation that ends a sentence after a URL, not the URL
_BLOCKS = {"p", "div", "br", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6", "table", "td", "th",
           "ul", "ol", "blockquote", "pre", "hr", "center", "section", "article", "header", "footer"}
_HIDDEN = {"script", "style", "head", "title", "template"}


class HTMLReading(HTMLParser):
    """One pass over an HTML body: ``text()`` and ``links``."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []
        self._pieces: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HIDDEN:
            self._hidden += 1
        elif tag in _BLOCKS:
            self._pieces.append("\n")
        if tag in ("a", "area"):
            href = dict(attrs).get("href")
            if href and _is_web(href.strip()):
                self.links.append(href.strip())

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _HIDDEN:  # <br/>, <hr/>: no end tag follows to undo a count
            self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN:
            self._hidden = max(self._hidden - 1, 0)
        elif tag in _BLOCKS:
            self._pieces.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self._pieces.append(data)

    def text(self) -> str:
        """The text shown: runs of spaces made one, a line per block."""
        lines = (" ".join(line.split()) for line in "".join(self._pieces).splitlines())
        return "\n".join(line for line in lines if line)


def _is_web(link: str) -> bool:
    return link[:7].lower() == "http://" or link[:8].lower() == "https://"


def read_html(html: str) -> HTMLReading:
    """``html`` read; whatever the markup, this returns (``html.parser``
    does not raise on bad markup; anything else it might is caught)."""
    reading = HTMLReading()
    try:
        reading.feed(html)
        reading.close()
    except Exception:  # a parser bug on hostile input must not fail the test that reads it
        pass
    return reading


def _trim(url: str) -> str:
    """A URL without the punctuation after it: a sentence's full stop, or
    a closing bracket that it did not open."""
    while url:
        if url[-1] in _TRAILING:
            url = url[:-1]
        elif url[-1] == ")" and url.count("(") < url.count(")"):
            url = url[:-1]
        elif url[-1] in "]}>" and url.count(url[-1]) > url.count({"]": "[", "}": "{", ">": "<"}[url[-1]]):
            url = url[:-1]
        else:
            break
    return url


def bare_urls(text: str) -> list[str]:
    """The http(s) URLs written in ``text``, in order."""
    return [url for url in (_trim(found) for found in URL.findall(text)) if url.partition("://")[2]]


def unique_links(*groups: Iterable[str]) -> list[str]:
    """The links of every group, in order, each once."""
    seen: dict[str, None] = {}
    for group in groups:
        for link in group:
            seen.setdefault(link, None)
    return list(seen)
