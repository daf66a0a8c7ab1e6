#!/usr/bin/env python3
"""Make the README's screenshots of the web inbox: docs/screenshots/inbox.png and message.png.

Starts a catcher (SMTP and the web inbox, as ``mailwire serve`` runs them)
on free loopback ports in a temporary Maildir, sends it a handful of
realistic messages, and photographs the list and a message view in headless
chromium (Debian's ``chromium`` and ``chromium-driver``; Selenium, from the
test extra). Rerunnable: the same mail, the same window size.

    .venv/bin/python dev/screenshots.py [--out docs/screenshots] [--dark] [--width 1280 --height 800]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import smtplib
import struct
import sys
import tempfile
import time
import zlib
from email.message import EmailMessage
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from mailwire.inbox import Catcher, Inbox
from mailwire.testing import ServerThread
from mailwire.web.serve import WebInbox



def _png(size: int, rgb: tuple[int, int, int]) -> bytes:
    """A square PNG of one colour with a white ring (the sample mail's logo)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = []
    for y in range(size):
        row = bytearray(b"\0")
        for x in range(size):
            d = ((x - size / 2 + 0.5) ** 2 + (y - size / 2 + 0.5) ** 2) ** 0.5
            row += bytes((255, 255, 255)) if size * 0.22 < d < size * 0.32 else bytes(rgb)
        rows.append(bytes(row))
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"".join(rows)))
            + chunk(b"IEND", b""))


LOGO = _png(32, (31, 111, 235))

SAMPLES = [
    ("Acme Shop <orders@acme-shop.test>", "Dana Reyes <dana@example.com>", "Your order #48213 has shipped",
     "Good news, Dana! Your parcel is on its way and should arrive on Thursday.", True, "invoice-48213.pdf"),
    ("GitHub <noreply@github.test>", "dev-team@example.com", "[mailwire] Pull request #212: web inbox page",
     "A new pull request was opened by sam: the web inbox page, with tests in headless chromium.", False, None),
    ("Calendar <calendar@example.com>", "Dana Reyes <dana@example.com>", "Invitation: Sprint review, Fri 10:00",
     "You have been invited to the sprint review. Join from the meeting room or online.", False, "invite.ics"),
    ("Acme Accounts <security@acme-shop.test>", "dana@example.com", "Your password reset code",
     "Use the code 482913 to reset your password. It expires in 15 minutes.", True, None),
    ("Newsletter <news@weekly.test>", "Subscribers <list@weekly.test>", "This week: faster SMTP in Python",
     "Five things we learned making an SMTP server keep up with Postfix.", True, None),
    ("Billing <billing@cloud.test>", "Finance <finance@example.com>", "Invoice for November (EUR 128.40)",
     "Your invoice for November is attached. Payment is due within 30 days.", False, "invoice-nov.pdf"),
]


def _message(sender: str, to: str, subject: str, text: str, html: bool, attachment: str | None) -> EmailMessage:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = sender, to, subject
    message.set_content(text + "\n\nThanks,\nThe team\n")
    if html:
        message.add_alternative(
            '<div style="font-family: Helvetica, Arial, sans-serif; max-width: 560px; color: #222222">'
            '<p><img src="cid:logo@mail" width="32" height="32" alt="logo" style="vertical-align: middle">'
            f' <b style="font-size: 18px">{subject}</b></p><p>{text}</p>'
            '<p><a href="https://example.com/track" style="background-color: #1f6feb; color: #ffffff; '
            'padding: 8px 14px; border-radius: 4px; text-decoration: none">View details</a></p>'
            '<p style="color: #777777; font-size: 12px">You receive this because you have an account with us. '
            '<img src="https://tracker.example.com/open.gif" width="1" height="1" alt=""></p></div>',
            subtype="html")
        message.get_payload()[1].add_related(LOGO, maintype="image", subtype="png", cid="<logo@mail>")
    if attachment:
        kind = ("text", "calendar") if attachment.endswith(".ics") else ("application", "pdf")
        message.add_attachment(b"%PDF-1.4 sample\n" * 40, maintype=kind[0], subtype=kind[1], filename=attachment)
    return message


def _browser(width: int, height: int, dark: bool) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--hide-scrollbars",
                     f"--window-size={width},{height}", "--force-device-scale-factor=1"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(shutil.which("chromedriver")))
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600})
    if dark:
        driver.execute_cdp_cmd("Emulation.setEmulatedMedia",
                               {"features": [{"name": "prefers-color-scheme", "value": "dark"}]})
    return driver


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "docs" / "screenshots"))
    parser.add_argument("--dark", action="store_true", help="the dark theme (files named *-dark.png)")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=800)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    suffix = "-dark" if args.dark else ""
    with tempfile.TemporaryDirectory() as scratch:
        inbox = Inbox(Path(scratch) / "mail")
        smtp = ServerThread(Catcher(inbox), record=False)
        smtp.start()
        assert smtp.loop is not None
        web = WebInbox(inbox, "127.0.0.1", 0)
        asyncio.run_coroutine_threadsafe(web.start(), smtp.loop).result(30)
        try:
            with smtplib.SMTP(*smtp.address[:2], timeout=30) as client:
                for sample in SAMPLES:
                    client.send_message(_message(*sample))
                    time.sleep(0.05)  # distinct arrival times, in this order
            inbox.mark_read([m.id for m in inbox.list(0, 50, "subject:sprint").messages
                             + inbox.list(0, 50, "subject:week").messages])
            driver = _browser(args.width, args.height, args.dark)
            try:
                wait = WebDriverWait(driver, 20, poll_frequency=0.05,
                                     ignored_exceptions=(StaleElementReferenceException,))
                driver.get(web.urls[0])
                wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#messages li")) == len(SAMPLES))
                wait.until(lambda d: "on" in d.find_element(By.ID, "live").get_attribute("class").split())
                driver.execute_script("document.activeElement.blur()")
                driver.save_screenshot(str(out / f"inbox{suffix}.png"))
                wait.until(lambda d: d.find_element(By.XPATH, "//a[contains(., 'has shipped')]").click() or True)
                wait.until(lambda d: "shipped" in d.find_element(By.ID, "subject").text)
                driver.switch_to.frame(driver.find_element(By.ID, "html-frame"))
                wait.until(lambda d: d.find_elements(By.TAG_NAME, "img")
                           and d.execute_script("return document.images[0].naturalWidth") > 0)
                driver.switch_to.default_content()
                driver.execute_script("document.activeElement.blur()")
                driver.save_screenshot(str(out / f"message{suffix}.png"))
            finally:
                driver.quit()
        finally:
            asyncio.run_coroutine_threadsafe(web.stop(), smtp.loop).result(30)
            smtp.stop()
    print(f"wrote {out / f'inbox{suffix}.png'} and {out / f'message{suffix}.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
