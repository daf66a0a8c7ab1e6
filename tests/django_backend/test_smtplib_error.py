"""``smtplib_error`` on what only the pool raises: a message it never sent."""

from __future__ import annotations

import smtplib

from mailwire import PoolClosed
from mailwire.django_sending import smtplib_error


def test_a_message_a_closed_pool_never_sent_is_a_disconnect() -> None:
    # Django's backend meets a connection gone before the message as SMTPServerDisconnected.
    err = smtplib_error(PoolClosed("the pool was closed before this message was sent"))
    assert isinstance(err, smtplib.SMTPServerDisconnected)
    assert str(err) == "the pool was closed before this message was sent"


def test_other_errors_pass_as_they_are() -> None:
    while_opening = PoolClosed("the pool is closed")
    assert smtplib_error(while_opening, opening=True) is while_opening
    bug = RuntimeError("not the pool's closing")  # no longer taken for it
    assert smtplib_error(bug) is bug
