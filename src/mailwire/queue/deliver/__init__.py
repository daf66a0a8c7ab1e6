"""Deliverers: where a worker puts what the queue holds (one module each).

``base`` has the ``Deliverer`` protocol, what a delivery reports
(``Report``, a ``Failure`` per refused recipient) and the trace lines every
deliverer prepends; ``maildir`` stores in a Maildir, idempotent by queue id
on its own; ``remote`` hands the message to an LMTP server or an SMTP relay
with mailwire's pools (the worker deduplicates those by queue id).
"""

from __future__ import annotations

from .base import Deliverer, Failure, Report, trace_lines
from .maildir import MaildirDeliverer
from .remote import LMTPDeliverer, RelayDeliverer

__all__ = ["Deliverer", "Failure", "Report", "trace_lines", "MaildirDeliverer", "LMTPDeliverer", "RelayDeliverer"]
