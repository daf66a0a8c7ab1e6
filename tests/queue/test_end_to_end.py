"""The whole queue end to end, real components only: Postfix's ``smtp-source``
and our own client -> HAProxy -> 2 ``mailwire serve --queue`` -> Redis
(``appendfsync always``) + a shared blob directory -> 2 ``mailwire worker
--maildir``, all on loopback (``tests/helpers/queue_cluster.py``).

smtp-source sends 5,000 messages over 20 sessions that keep their
connections, 4,000 of 1 KB (inline in the queue entry) and 1,000 of 8 KB
(beyond the 4 KB ``--queue-inline-max``: a blob, written before the entry);
meanwhile our client sends 300 unique messages from 127.0.0.3 and
127.0.0.4. Once the queue is drained the delivered Maildir must hold every
message exactly once: each queue id once (in the file name and the
``X-Mailwire-Queue-Id`` header alike), each of our 300 by its queue id from
the 250 and by its content hash, the 5,000 by count; and every ``Received:``
line names the real client (127.0.0.1 for smtp-source, the bound address for
ours), never HAProxy's 127.0.0.2.
"""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from helpers.haproxy import HAPROXY, PROXY_SOURCE
from helpers.queue_cluster import QueueCluster, check_exactly_once
from helpers.queue_load import Load
from helpers.redis_server import REDIS_SERVER

SMTP_SOURCE = shutil.which("smtp-source") or "/usr/sbin/smtp-source"

pytestmark = [
    pytest.mark.cluster,  # the whole cluster under load: dev/test.sh runs these on one Python
    pytest.mark.skipif(not Path(HAPROXY).exists(), reason="haproxy is not installed (dev/bootstrap.sh installs it)"),
    pytest.mark.skipif(not Path(REDIS_SERVER).exists(),
                       reason="redis-server is not installed (dev/bootstrap.sh installs it)"),
    pytest.mark.skipif(not Path(SMTP_SOURCE).exists(),
                       reason="smtp-source is not installed (Debian's postfix; dev/bootstrap.sh installs it)"),
]

INLINE_MAX = 4096
SMALL, LARGE, UNIQUE = 4000, 1000, 300


def smtp_source(address: tuple[str, int], messages: int, size: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [SMTP_SOURCE, "-d", "-s", "20", "-m", str(messages), "-l", str(size), "-M", "source.test",
         "-f", "source@example.org", "-t", "sink@example.net", f"{address[0]}:{address[1]}"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


@pytest.mark.timeout(300)
def test_every_message_is_delivered_exactly_once_with_its_real_client(tmp_path: Path) -> None:
    cluster = QueueCluster(tmp_path, fronts=2, workers=2, inline_max=INLINE_MAX, front_args=["-v"])
    try:
        cluster.start()
        load = Load(cluster.address, sessions=4, large_every=3, large_size=3 * INLINE_MAX)
        load.start(UNIQUE)
        for messages, size in ((SMALL, 1024), (LARGE, 2 * INLINE_MAX)):
            source = smtp_source(cluster.address, messages, size)
            output, _ = source.communicate(timeout=240)
            assert source.returncode == 0, output.decode(errors="replace")
            assert b"error" not in output.lower(), output.decode(errors="replace")
        load.join()
        stored = cluster.wait_drained(expected=SMALL + LARGE + UNIQUE, timeout=120)
        servers = cluster.haproxy.servers()
        facts = cluster.queue_stats()
    finally:
        exits = cluster.stop()

    # Nothing left behind: the operator's view agrees (delivered entries are removed from the stream).
    assert {k: facts[k] for k in ("length", "lag", "pending_total", "delayed", "dead")} == dict.fromkeys(
        ("length", "lag", "pending_total", "delayed", "dead"), 0), facts
    assert set(exits.values()) == {0}, exits  # SIGTERM: each ends what is under way and exits 0
    tally = check_exactly_once(load.outcomes, stored, others=SMALL + LARGE)
    assert tally.queued == tally.delivered == UNIQUE, tally
    assert len(stored) == SMALL + LARGE + UNIQUE
    assert len({s.name_id for s in stored}) == len(stored)
    clients = Counter(s.client for s in stored)
    assert clients == Counter({"127.0.0.1": SMALL + LARGE, **Counter(o.client for o in load.outcomes)})
    assert PROXY_SOURCE not in clients
    # Both front ends took their share; bodies beyond the threshold went to blobs (the front ends'
    # event=queued log lines say which).
    assert all(state.sessions > 0 for state in servers.values()), servers
    logs = "".join(front.output(tail=0) for front in cluster.fronts)
    assert logs.count(" blob=yes") == LARGE + UNIQUE // 3
    assert logs.count(" blob=no") == SMALL + UNIQUE - UNIQUE // 3
    assert not [p for p in cluster.blobs.rglob("*") if p.is_file()]  # each blob removed once delivered
