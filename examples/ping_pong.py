"""Ping-pong between two processes.

    python examples/ping_pong.py

Starts a second Python process that hosts a `Pong` actor, looks it up over TCP, sends it a
few pings (ask: request/reply) and a burst of tells, then stops the other process by its PID.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import trio

import actors


class Pong(actors.Actor):
    def __init__(self) -> None:
        self.pings = 0

    @actors.handler
    async def ping(self, n: int) -> str:
        self.pings += 1
        return f"pong {n} from pid {os.getpid()}"

    @actors.handler
    async def count(self) -> int:
        return self.pings


async def serve(url_file: str) -> None:
    async with actors.open_system("pong-side", listen="127.0.0.1:0") as system:
        await system.spawn(Pong, name="pong")
        with open(url_file + ".tmp", "w") as f:
            f.write(system.url)
        os.replace(url_file + ".tmp", url_file)
        await trio.sleep_forever()


async def play(url: str) -> None:
    async with actors.open_system("ping-side") as system:
        pong = await system.lookup(f"{url}/pong")
        for n in range(3):
            print(await pong.ask("ping", n))
        t0 = time.perf_counter()
        for n in range(1000):
            await pong.tell("ping", n)
        total = await pong.ask("count")  # arrives after the tells: per-sender order
        print(f"{total} pings handled; 1000 tells in {(time.perf_counter() - t0) * 1e3:.1f} ms")


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        trio.run(serve, sys.argv[2])
        return
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        url_file = os.path.join(tmp, "url")
        peer = subprocess.Popen([sys.executable, __file__, "--serve", url_file])
        try:
            deadline = time.monotonic() + 20
            while not os.path.exists(url_file):
                if time.monotonic() > deadline or peer.poll() is not None:
                    sys.exit("the pong process did not start")
                time.sleep(0.05)
            with open(url_file) as f:
                url = f.read()
            print(f"pong process {peer.pid} listens at {url}")
            trio.run(play, url)
        finally:
            peer.terminate()
            peer.wait(timeout=10)


if __name__ == "__main__":
    main()
