"""A TCP proxy that breaks connections: it forwards LISTEN to TARGET and, every
EVERY seconds, resets a SHARE of the connections it holds (RST, as a network
that drops them). Stops by itself after SECONDS.

    python -m tests.support.proxy LISTEN TARGET [--every 0.5] [--share 0.2] [--seconds 120]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import socket
import struct


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(OSError):
        writer.close()


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST: the peer sees a connection reset, not an orderly end."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def run(listen: int, target: int, every: float, share: float, seconds: float) -> None:
    live: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
    resets = 0

    async def serve(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", target)
        except OSError:
            reset(client_writer)
            return
        pair = (client_writer, upstream_writer)
        live.add(pair)
        try:
            await asyncio.gather(pipe(client_reader, upstream_writer), pipe(upstream_reader, client_writer))
        finally:
            live.discard(pair)

    server = await asyncio.start_server(serve, "127.0.0.1", listen)
    print("listening", flush=True)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        await asyncio.sleep(every)
        for pair in [p for p in live if random.random() < share]:
            live.discard(pair)
            resets += 1
            print("reset", flush=True)
            for side in pair:
                reset(side)
    server.close()
    print(f"resets {resets}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("listen", type=int)
    parser.add_argument("target", type=int)
    parser.add_argument("--every", type=float, default=0.5)
    parser.add_argument("--share", type=float, default=0.2)
    parser.add_argument("--seconds", type=float, default=120.0)
    args = parser.parse_args()
    asyncio.run(run(args.listen, args.target, args.every, args.share, args.seconds))


if __name__ == "__main__":
    main()
