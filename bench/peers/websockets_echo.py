"""Echo server on Python's `websockets` (asyncio implementation, the version pinned in
scripts/install-deps.sh): a peer of the echo matrix (bench/report.sh) and of the
compression runs (bench/compression.sh).

    .venv/bin/python bench/peers/websockets_echo.py [--listen 127.0.0.1:0] [--deflate]

Prints `listening on HOST:PORT` once bound. Every text or binary message goes back as it
came. No keepalive pings. --deflate accepts permessage-deflate with the gateway's
defaults (zlib level 1, no context takeover either way, 15-bit window) so a compressed
run compares the implementations, not the settings; without it compression is off
(websockets' own default would negotiate it with context takeover and a 12-bit window).
"""

import argparse
import asyncio
import ipaddress
import signal

from websockets.asyncio.server import serve
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory


async def echo(ws):
    async for message in ws:
        await ws.send(message)


async def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listen", default="127.0.0.1:0")
    ap.add_argument("--deflate", action="store_true")
    a = ap.parse_args()
    host, _, port = a.listen.rpartition(":")
    if not ipaddress.ip_address(host.strip("[]")).is_loopback:
        raise SystemExit(f"websockets_echo: refusing to listen on {host}: loopback only")
    if a.deflate:
        options = dict(
            compression=None,
            extensions=[
                ServerPerMessageDeflateFactory(
                    server_no_context_takeover=True,
                    client_no_context_takeover=True,
                    server_max_window_bits=15,
                    compress_settings={"level": 1},
                )
            ],
        )
    else:
        options = dict(compression=None)
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    async with serve(echo, host, int(port), ping_interval=None, max_size=64 << 20,
                     max_queue=64, backlog=4096, **options) as server:
        bound = server.sockets[0].getsockname()
        print(f"listening on {bound[0]}:{bound[1]}", flush=True)
        await stop


if __name__ == "__main__":
    asyncio.run(main())
