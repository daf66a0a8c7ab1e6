"""The web inbox's HTTP side: Mailpit's API v1 over ``mailwire.inbox``, on aiohttp.

An extra (``pip install 'mailwire[web]'``: aiohttp and nh3). The routes
speak Mailpit's API v1 (its routes, parameters and JSON field names), so
Mailpit's client libraries and test integrations work against ``mailwire
serve`` unchanged; two routes go beyond it (``/api/v1/wait``, a blocking
wait for a message, and ``/api/v1/events``, arrivals as server-sent
events). The store is ``inbox/``; nothing there knows this package, and
nothing outside this package and ``cli/`` imports aiohttp.

* ``params.py``: query and body parameters, validated; errors as JSON;
* ``shapes.py``: the store's values as Mailpit's JSON objects;
* ``messages.py``: the list, search, delete and mark-read routes;
* ``message.py``: one message: its summary, headers, raw source, parts;
* ``view.py``: ``/view/{ID}.html`` (sanitised, under a strict CSP) and ``.txt``;
* ``watch.py``: the wait and the event stream;
* ``watch.py`` also serves Mailpit's WebSocket of events (``/api/events``);
* ``release.py``: releasing a message to a real server (``inbox/release.py`` sends);
* ``send.py``: Mailpit's send API: a message built from JSON, stored as SMTP mail is;
* ``page.py``: the web inbox page at ``/`` (``static/``: its HTML, CSS and JavaScript);
* ``hosts.py``: which host names are loopback (no aiohttp: the CLI asks it);
* ``app.py``: the application (routes; loopback, auth and error middleware; info);
* ``serve.py``: running it on the SMTP server's event loop (``WebInbox``).

This module imports none of them (nor aiohttp), so ``mailwire serve`` can
say how to get the extra when it is missing.
"""

from __future__ import annotations

__all__: list[str] = []
