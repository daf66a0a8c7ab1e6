"""BufferedReading: one read buffer per thread, shared by every connection.

Many connections on one loop write at once, each its own bytes in pieces
smaller and larger than the buffer; each protocol must get exactly its own
stream back, whichever loop (asyncio's, uvloop's) runs it.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from mailwire._aio.reading import READ_SIZE, BufferedReading


class Collect(BufferedReading):
    def __init__(self) -> None:
        self.received = bytearray()
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        assert type(data) is bytes  # an owned copy, not a view of the shared buffer
        self.received += data

    def eof_received(self) -> bool:
        self.done.set_result(None)
        return False


async def _exchange(connections: int) -> None:
    loop = asyncio.get_running_loop()
    protocols: list[Collect] = []

    def factory() -> Collect:
        protocols.append(Collect())
        return protocols[-1]

    server = await loop.create_server(factory, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    rng = random.Random(7)
    payloads = [
        b"".join(bytes([i]) * rng.choice([1, 30, 1000, READ_SIZE + 17]) for _ in range(40))
        for i in range(connections)
    ]

    async def send(payload: bytes) -> None:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        for start in range(0, len(payload), 5000):
            writer.write(payload[start:start + 5000])
            await writer.drain()
        writer.write_eof()
        await writer.drain()
        writer.close()

    await asyncio.gather(*(send(p) for p in payloads))
    for _ in range(1000):  # the server may still be accepting: bounded wait
        if len(protocols) == connections:
            break
        await asyncio.sleep(0.01)
    await asyncio.wait_for(asyncio.gather(*(p.done for p in protocols)), 10)
    server.close()
    got = sorted(bytes(p.received) for p in protocols)
    assert got == sorted(payloads)


def test_each_connection_gets_its_own_bytes_on_asyncio() -> None:
    asyncio.run(_exchange(12))


def test_each_connection_gets_its_own_bytes_on_uvloop() -> None:
    uvloop = pytest.importorskip("uvloop")
    loop = uvloop.new_event_loop()
    try:
        loop.run_until_complete(_exchange(12))
    finally:
        loop.close()
