"""The web inbox in a real headless browser: Debian's chromium, driven by Selenium through chromedriver.

One browser and one catcher (SMTP and the web inbox, real sockets on
loopback) for the module; each test starts from an empty inbox and a freshly
loaded page whose event stream is open. The planted-content test also runs a
"call home" HTTP listener on loopback: the hostile message's scripts,
handlers and links aim at it, and it proves no request came (and that the
remote image does come once the user asks for remote content, so the
listener was reachable all along). Every wait is bounded (``WAIT``).
Skipped, with the reason, where chromium or chromedriver is missing
(``dev/bootstrap.sh`` installs them).
"""

from __future__ import annotations

import base64
import http.server
import mailbox
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from pathlib import Path
from typing import Any, TypeVar

import pytest

from mailwire.inbox.release import ReleaseRelay

from .conftest import Catching, mail, start_catching, stop_catching

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="needs Debian's chromium and chromium-driver (dev/bootstrap.sh installs them)")
webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (the test extra)")
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.remote.webelement import WebElement  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

WAIT = 20.0  # seconds any one thing may take to show
DESKTOP = (1280, 900)
T = TypeVar("T")


class Listener:
    """An HTTP server on loopback that records the path of every request it gets."""

    def __init__(self) -> None:
        seen = self.seen = []  # type: list[str]

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                seen.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "image/gif")
                self.end_headers()
                self.wfile.write(base64.b64decode("R0lGODlhAQABAIAAAP///wAAACH5BAEAAAAALAAAAAABAAEAAAICRAEAOw=="))

            do_POST = do_GET

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def second(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Catching]:
    """A second mailwire server (a catcher too, so what it got can be asked): where releases go."""
    catching = start_catching(tmp_path_factory.mktemp("second") / "mail")
    try:
        yield catching
    finally:
        stop_catching(catching)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, second: Catching) -> Iterator[Catching]:
    # Plaintext to a relay on loopback (TLS to the relay is test_release.py's).
    relay = ReleaseRelay("127.0.0.1", second.smtp.address[1], tls="none")
    catching = start_catching(tmp_path_factory.mktemp("page") / "mail", relay=relay)
    try:
        yield catching
    finally:
        stop_catching(catching)


@pytest.fixture(scope="module")
def home() -> Iterator[Listener]:
    listener = Listener()
    try:
        yield listener
    finally:
        listener.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--no-first-run", "--disable-background-networking", f"--window-size={DESKTOP[0]},{DESKTOP[1]}"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = webdriver.ChromeService(executable_path=CHROMEDRIVER)
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()


def _console_errors(driver: Any) -> list[str]:
    """The errors in the page's console since the last call."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


@pytest.fixture
def page(site: Catching, browser: Any) -> Iterator[Any]:
    """The inbox emptied, the page loaded at desktop size, its event stream open."""
    assert site.request("DELETE", "/api/v1/messages").status == 200
    browser.set_window_size(*DESKTOP)
    browser.get(site.url + "/")
    until(browser, lambda d: "on" in d.find_element(By.ID, "live").get_attribute("class").split())
    assert _console_errors(browser) == []  # loading it logged none
    yield browser
    assert _console_errors(browser) == []


def until(driver: Any, condition: Callable[[Any], T], message: str = "") -> T:
    try:
        waiting = WebDriverWait(driver, WAIT, poll_frequency=0.05, ignored_exceptions=(StaleElementReferenceException,))
        return waiting.until(condition, message)
    except TimeoutException:
        driver.switch_to.default_content()
        shown = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#messages li")]
        raise AssertionError(f"{message or condition} not within {WAIT} s; the list shows {shown}; "
                             f"status: {driver.find_element(By.ID, 'status').text!r}") from None


def subjects(driver: Any) -> list[str]:
    return [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#messages li .subj .text")]


def row(driver: Any, subject: str) -> WebElement:
    def found(d: Any) -> WebElement | bool:
        for item in d.find_elements(By.CSS_SELECTOR, "#messages li"):
            if item.find_element(By.CSS_SELECTOR, ".subj .text").text == subject:
                return item
        return False

    return until(driver, found, f"a row with the subject {subject!r}")


def click(driver: Any, element_id: str) -> None:
    until(driver, lambda d: d.find_element(By.ID, element_id).is_enabled(), f"#{element_id} enabled")
    driver.find_element(By.ID, element_id).click()


def open_message(driver: Any, subject: str) -> None:
    until(driver, lambda d: row(d, subject).find_element(By.CSS_SELECTOR, "a.row").click() or True,
          f"a click on {subject!r}")  # again if the list was redrawn under the click
    until(driver, lambda d: d.find_element(By.ID, "subject").text == subject, f"the message {subject!r} open")


# -- the tests ---------------------------------------------------------------------------


def test_mail_sent_with_mailwire_send_shows_in_the_open_list_without_a_reload(site: Catching, page: Any) -> None:
    page.execute_script("window.mailwireMarker = 'the same page'")
    host, port = site.smtp.address[:2]
    sent = subprocess.run(
        [sys.executable, "-m", "mailwire", "send", "--server", f"{host}:{port}", "--from", "alice@example.com",
         "--to", "bob@example.org", "--subject", "Live from the CLI", "--body", "Sent by mailwire send"],
        stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    assert sent.returncode == 0, sent.stderr
    item = row(page, "Live from the CLI")
    assert "unread" in item.get_attribute("class").split()
    assert "bob@example.org" in item.text and "B" in item.find_element(By.CSS_SELECTOR, ".size").text
    assert page.execute_script("return window.mailwireMarker") == "the same page"  # never reloaded
    site.send(mail("And a second", attachments=(("notes.txt", b"some notes", "text/plain"),)))
    until(page, lambda d: subjects(d) == ["And a second", "Live from the CLI"], "the newest first")
    assert row(page, "And a second").find_elements(By.CSS_SELECTOR, ".clip")  # the attachment mark
    assert not row(page, "Live from the CLI").find_elements(By.CSS_SELECTOR, ".clip")
    assert page.execute_script("return window.mailwireMarker") == "the same page"


HOSTILE_SUBJECT = "<img src=x onerror=\"document.title='owned'\"><b>Hostile</b>"


def _hostile(port: int) -> str:
    home = f"http://127.0.0.1:{port}"
    return f"""<html><head><style>body {{ background: url({home}/ran-css) }}</style>
<script>parent.document.title = 'owned'; top.document.body.dataset.owned = 'yes';
new Image().src = '{home}/ran-script-image'; fetch('{home}/ran-script-fetch');</script></head>
<body onload="fetch('{home}/ran-onload')">
<p>Planted content renders</p>
<img src="{home}/img-onerror.gif" onerror="parent.document.title='owned'; fetch('{home}/ran-onerror')">
<a href="javascript:parent.document.title='owned';fetch('{home}/ran-link')">click me</a>
<img src="{home}/img-remote.gif" alt="remote image">
<svg><script>fetch('{home}/ran-svg')</script></svg>
<form action="{home}/ran-form" method="post"><input name="secret" value="x"><button>Send it</button></form>
</body></html>"""


def test_the_html_renders_while_planted_scripts_handlers_links_and_images_do_nothing(
        site: Catching, page: Any, home: Listener) -> None:
    page.execute_script("window.mailwireMarker = 'untouched'")
    site.send(mail(HOSTILE_SUBJECT, html=_hostile(home.port), text="hostile"))
    item = row(page, HOSTILE_SUBJECT)  # the subject's markup shows as the characters it is
    assert not item.find_elements(By.CSS_SELECTOR, "img, b")
    open_message(page, HOSTILE_SUBJECT)
    frame = page.find_element(By.ID, "html-frame")
    sandbox = frame.get_attribute("sandbox").split()
    assert "allow-scripts" not in sandbox and "allow-same-origin" not in sandbox
    page.switch_to.frame(frame)
    try:
        until(page, lambda d: d.find_elements(By.XPATH, "//p[text()='Planted content renders']"), "the HTML rendered")
        page.find_element(By.LINK_TEXT, "click me").click()
    finally:
        page.switch_to.default_content()
    assert _our_title(page) and page.find_element(By.TAG_NAME, "body").get_attribute("data-owned") is None
    assert page.execute_script("return window.mailwireMarker") == "untouched"
    assert home.seen == []  # no script, handler, link, form, style or remote image called home
    # The user asks for remote content: now (and only now) the remote images load.
    page.find_element(By.ID, "remote").click()
    until(page, lambda d: "/img-remote.gif" in home.seen, "the remote image loaded once asked for")
    assert _our_title(page) and page.execute_script("return window.mailwireMarker") == "untouched"
    assert [path for path in home.seen if not path.startswith("/img-")] == []  # still nothing ran


def _our_title(driver: Any) -> bool:
    """The page's own title, the unread count in front or not: that count
    changes as the message arrives and is read, so the title is checked for
    its form, not compared with one taken earlier (a planted script would
    have set 'owned')."""
    return re.fullmatch(r"(\(\d+\) )?mailwire inbox", driver.title) is not None


def _search(driver: Any, query: str) -> None:
    box = driver.find_element(By.ID, "query")
    box.clear()
    box.send_keys(query + Keys.ENTER)


def _check(driver: Any, subject: str) -> None:
    box = row(driver, subject).find_element(By.CSS_SELECTOR, "input.select")
    if not box.is_selected():
        box.click()


def _state(driver: Any, subject: str) -> str:
    classes = row(driver, subject).get_attribute("class").split()
    return "unread" if "unread" in classes else "read"


def test_search_finds_it_and_hides_the_others_mark_read_and_unread_and_delete(site: Catching, page: Any) -> None:
    site.send(mail("Invoice 42", text="Total: 10 EUR"))
    site.send(mail("Weekly newsletter", sender="News <news@shop.test>"))
    until(page, lambda d: subjects(d) == ["Weekly newsletter", "Invoice 42"], "both listed")
    _search(page, "subject:invoice -from:shop.test")
    until(page, lambda d: subjects(d) == ["Invoice 42"], "the search's one match")
    assert "1 matching" in page.find_element(By.ID, "counts").text
    _check(page, "Invoice 42")
    click(page, "mark-read")
    until(page, lambda d: _state(d, "Invoice 42") == "read", "marked read")
    [found] = site.get("/api/v1/search?query=subject:invoice").json()["messages"]
    assert found["Read"] is True
    click(page, "mark-unread")
    until(page, lambda d: _state(d, "Invoice 42") == "unread", "marked unread")
    assert site.get("/api/v1/search?query=subject:invoice").json()["messages"][0]["Read"] is False
    click(page, "delete-selected")
    until(page, lambda d: subjects(d) == [] and d.find_element(By.ID, "empty").is_displayed(), "deleted")
    assert site.get(f"/api/v1/message/{found['ID']}").status == 404  # gone from the API too
    page.find_element(By.ID, "clear-search").click()
    until(page, lambda d: subjects(d) == ["Weekly newsletter"], "the search cleared")


PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")


def _rich() -> EmailMessage:
    message = mail("Your order has shipped",
                   html='<p>Your parcel is on its way.</p><img src="cid:logo@shop.test" alt="logo">',
                   text="Your parcel is on its way.",
                   attachments=(("invoice.pdf", b"%PDF-1.4 fake", "application/pdf"),))
    message.get_payload()[0].get_payload()[1].add_related(PNG, maintype="image", subtype="png", cid="<logo@shop.test>")
    return message


def test_the_message_view_text_headers_raw_parts_and_read_state(site: Catching, page: Any) -> None:
    site.send(_rich())
    open_message(page, "Your order has shipped")
    until(page, lambda d: "Alice <alice@example.com>" in d.find_element(By.ID, "envelope").text, "the envelope")
    until(page, lambda d: site.get("/api/v1/messages").json()["unread"] == 0, "opening marks it read")
    frame = page.find_element(By.ID, "html-frame")
    page.switch_to.frame(frame)
    try:
        until(page, lambda d: d.find_elements(By.XPATH, "//p[text()='Your parcel is on its way.']"), "the HTML")
        logo = page.find_element(By.TAG_NAME, "img")
        until(page, lambda d: d.execute_script("return arguments[0].naturalWidth", logo) == 1, "the inline image")
    finally:
        page.switch_to.default_content()
    page.find_element(By.ID, "tab-text").click()
    assert page.find_element(By.ID, "text").text == "Your parcel is on its way."
    page.find_element(By.ID, "tab-headers").click()
    until(page, lambda d: "Your order has shipped" in d.find_element(By.ID, "headers").text, "the headers")
    assert "Content-Type" in page.find_element(By.ID, "headers").text
    page.find_element(By.ID, "tab-raw").click()
    until(page, lambda d: "Return-Path:" in d.find_element(By.ID, "raw").text, "the raw source")
    download = page.find_element(By.ID, "download").get_attribute("href")
    reply = site.get(download.removeprefix(site.url))
    assert reply.status == 200 and reply.headers["Content-Disposition"].startswith("attachment")
    assert b"Subject: Your order has shipped" in reply.body
    page.find_element(By.ID, "tab-parts").click()
    links = {a.text: a.get_attribute("href") for a in page.find_elements(By.CSS_SELECTOR, "#parts a")}
    assert "invoice.pdf" in links
    tree = [line.text for line in page.find_elements(By.CSS_SELECTOR, "#structure li")]
    assert tree[:2] == ["message multipart/mixed", "1 multipart/alternative"], tree
    assert tree[2].startswith("1.1 text/plain \u00b7 body") and tree[3] == "1.2 multipart/related", tree
    assert tree[4].startswith("1.2.1 text/html \u00b7 body") and tree[5].startswith("1.2.2 image/png \u00b7 inline")
    assert tree[6].startswith('2 application/pdf "invoice.pdf" \u00b7 attachment') and len(tree) == 7, tree
    assert site.get(links["invoice.pdf"].removeprefix(site.url)).body == b"%PDF-1.4 fake"
    until(page, lambda d: d.execute_script(
        "return [...document.querySelectorAll('#inline-images img')].every(i => i.naturalWidth === 1)"
        " && document.querySelectorAll('#inline-images img').length === 1"), "the inline image shown")
    assert page.find_element(By.ID, "toggle-read").text == "Mark unread"
    page.find_element(By.ID, "toggle-read").click()
    until(page, lambda d: site.get("/api/v1/messages").json()["unread"] == 1, "marked unread")
    page.find_element(By.ID, "back").click()
    until(page, lambda d: _state(d, "Your order has shipped") == "unread", "unread in the list")
    open_message(page, "Your order has shipped")
    page.find_element(By.ID, "delete-one").click()
    until(page, lambda d: d.find_element(By.ID, "list-view").is_displayed() and subjects(d) == [], "deleted")
    assert site.get("/api/v1/messages").json()["total"] == 0


def test_mailboxes_filter_the_list_and_delete_all_matching_asks_first(site: Catching, page: Any) -> None:
    site.send(mail("Reset for Carol"), to=("carol@example.org",))
    site.send(mail("Reset for Dave"), to=("dave@example.org",))
    site.send(mail("Welcome Dave"), to=("dave@example.org",))
    until(page, lambda d: len(subjects(d)) == 3, "all three")
    select = page.find_element(By.ID, "mailbox")
    until(page, lambda d: select.find_elements(By.CSS_SELECTOR, 'option[value="dave@example.org"]'),
          "the mailboxes listed")
    assert "dave@example.org (2, 2 unread)" in select.text
    webdriver.support.select.Select(select).select_by_value("dave@example.org")
    until(page, lambda d: subjects(d) == ["Welcome Dave", "Reset for Dave"], "Dave's mailbox")
    _search(page, "subject:reset")
    until(page, lambda d: subjects(d) == ["Reset for Dave"], "Dave's reset")
    assert page.find_element(By.ID, "delete-all").text == "Delete matching"
    page.find_element(By.ID, "delete-all").click()
    dialog = page.find_element(By.ID, "confirm")
    until(page, lambda d: dialog.is_displayed(), "the confirmation")
    assert "subject:reset" in dialog.text and "dave@example.org" in dialog.text
    page.find_element(By.ID, "confirm-no").click()  # cancelled: nothing goes
    until(page, lambda d: not dialog.is_displayed(), "the confirmation closed")
    assert site.get("/api/v1/messages").json()["total"] == 3
    page.find_element(By.ID, "delete-all").click()
    until(page, lambda d: dialog.is_displayed(), "the confirmation again")
    page.find_element(By.ID, "confirm-yes").click()
    until(page, lambda d: subjects(d) == [], "Dave's reset deleted")
    left = {m["Subject"] for m in site.get("/api/v1/messages").json()["messages"]}
    assert left == {"Reset for Carol", "Welcome Dave"}


def test_keyboard_search_open_and_back(site: Catching, page: Any) -> None:
    site.send(mail("First"))
    site.send(mail("Second"))
    until(page, lambda d: subjects(d) == ["Second", "First"], "both listed")
    page.execute_script("document.getElementById('messages').focus()")  # the list has the focus, not a field
    page.switch_to.active_element.send_keys("j")
    page.switch_to.active_element.send_keys("j")
    focused = page.switch_to.active_element
    assert focused.get_attribute("data-id") == row(page, "First").get_attribute("data-id")
    focused.send_keys(Keys.ENTER)
    until(page, lambda d: d.find_element(By.ID, "subject").text == "First", "opened with Enter")
    page.switch_to.active_element.send_keys(Keys.ESCAPE)
    until(page, lambda d: d.find_element(By.ID, "list-view").is_displayed(), "back with Escape")
    page.find_element(By.TAG_NAME, "body").send_keys("/")
    assert page.switch_to.active_element.get_attribute("id") == "query"


def _no_horizontal_scroll(driver: Any) -> bool:
    return bool(driver.execute_script(
        "return document.documentElement.scrollWidth <= document.documentElement.clientWidth"))


def test_a_phone_sized_window_has_no_horizontal_scroll(site: Catching, page: Any) -> None:
    long = "A very long subject " + "that-never-breaks-" * 12
    site.send(mail(long, sender=f"{'Someone ' * 8}<{'x' * 60}@example.com>", html="<p>" + "wide " * 200 + "</p>",
                   attachments=(("a-file-with-a-really-" + "long-" * 20 + "name.txt", b"x", "text/plain"),)))
    page.set_window_size(390, 844)
    until(page, lambda d: len(subjects(d)) == 1, "listed")
    assert page.execute_script("return window.innerWidth") <= 390
    assert _no_horizontal_scroll(page)
    open_message(page, long)
    assert _no_horizontal_scroll(page)
    page.find_element(By.ID, "tab-parts").click()
    assert _no_horizontal_scroll(page)


def _luminance(driver: Any, script: str) -> float:
    rgb = driver.execute_script(f"return getComputedStyle({script}).backgroundColor")
    red, green, blue = (int(v) for v in rgb[rgb.index("(") + 1:rgb.index(")")].split(",")[:3])
    return (0.2126 * red + 0.7152 * green + 0.0722 * blue) / 255


def test_the_dark_theme_follows_the_system(site: Catching, page: Any) -> None:
    site.send(mail("In the dark"))
    row(page, "In the dark")
    assert _luminance(page, "document.body") > 0.9
    dark = [{"name": "prefers-color-scheme", "value": "dark"}]
    page.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": dark})
    try:
        until(page, lambda d: _luminance(d, "document.body") < 0.2, "a dark page")
        text = page.execute_script("return getComputedStyle(document.querySelector('#messages .subj')).color")
        assert min(int(v) for v in text[text.index("(") + 1:text.index(")")].split(",")[:3]) > 150  # light text
    finally:
        page.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})


def _many_parts(count: int) -> bytes:
    message = MIMEMultipart()
    message["From"] = "robot@example.com"
    message["To"] = "bob@example.org"
    message["Subject"] = f"{count} parts"
    message.attach(MIMEText("see the parts"))
    for n in range(count - 1):
        message.attach(MIMEApplication(b"part %d" % n, Name=f"part-{n}.bin"))
    return message.as_bytes()


def _big(size: int) -> bytes:
    """A message with an attachment of ``size`` octets (written out directly:
    the email package's generator takes seconds over 50 MB)."""
    return (b"From: robot@example.com\r\nTo: bob@example.org\r\nSubject: 50 MB attached\r\nMIME-Version: 1.0\r\n"
            b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\na big one\r\n'
            b'--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename="big.bin"\r\n'
            b"Content-Transfer-Encoding: base64\r\n\r\n"
            + base64.encodebytes(bytes(range(256)) * (size // 256)).replace(b"\n", b"\r\n")
            + b"--b--\r\n")


def test_a_thousand_part_message_and_a_50_mb_attachment_list_and_open(site: Catching, page: Any) -> None:
    box = mailbox.Maildir(site.inbox.path, create=False)  # stored as the catcher would, without SMTP's time
    box.add(_many_parts(1000))
    box.add(_big(50 * 1024 * 1024))
    site.inbox.sync()
    until(page, lambda d: sorted(subjects(d)) == ["1000 parts", "50 MB attached"], "both listed")
    assert "MB" in row(page, "50 MB attached").find_element(By.CSS_SELECTOR, ".size").text
    open_message(page, "1000 parts")
    page.find_element(By.ID, "tab-parts").click()
    until(page, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#parts li")) == 1000, "the parts listed")
    page.find_element(By.ID, "back").click()
    open_message(page, "50 MB attached")
    page.find_element(By.ID, "tab-raw").click()
    until(page, lambda d: "the first 1.0 MB shown" in d.find_element(By.ID, "raw").text, "the head of the source")
    page.find_element(By.ID, "tab-parts").click()
    assert "big.bin" in page.find_element(By.ID, "parts").text and "50.0 MB" in page.find_element(By.ID, "parts").text


def test_release_delivers_it_to_a_second_server(site: Catching, second: Catching, page: Any) -> None:
    site.send(mail("Release me to Carol", text="Hello Carol"))
    open_message(page, "Release me to Carol")
    click(page, "release")
    dialog = page.find_element(By.ID, "release-dialog")
    until(page, lambda d: dialog.is_displayed(), "the release dialog")
    assert f"127.0.0.1:{second.smtp.address[1]}" in dialog.text  # where it goes, from /api/v1/webui
    field = page.find_element(By.ID, "release-to")
    assert field.get_attribute("value") == "bob@example.org"  # the message's own To, to start from
    field.clear()
    field.send_keys("not an address@")
    page.find_element(By.ID, "release-send").click()
    until(page, lambda d: "address" in d.find_element(By.ID, "release-error").text, "the refusal shown")
    [refused] = _console_errors(page)  # the browser logs the 400 itself: the one error expected
    assert "/release" in refused and "400" in refused
    field.clear()
    field.send_keys("carol@example.net, dave@example.net" + Keys.ENTER)
    until(page, lambda d: not dialog.is_displayed(), "the dialog closed once released")
    assert "Released to carol@example.net, dave@example.net" in page.find_element(By.ID, "status").text
    arrived = second.inbox.wait("subject:\"Release me to Carol\"", timeout=WAIT)
    assert set(arrived.recipients) == {"carol@example.net", "dave@example.net"}
    assert second.inbox.message(arrived.id).text.strip() == "Hello Carol"
