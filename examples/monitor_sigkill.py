"""Monitor an actor in another process, SIGKILL that process, receive `Down`.

    python examples/monitor_sigkill.py

The monitor fires with reason `noconnection` once the connection drops (at once when the
kernel resets it; within the heartbeat timeout when the peer just goes silent).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import trio

import actors


class Worker(actors.Actor):
    @actors.handler
    async def pid(self) -> int:
        return os.getpid()


class Watcher(actors.Actor):
    def __init__(self) -> None:
        self.seen = trio.Event()
        self.down: actors.Down | None = None

    async def on_down(self, down: actors.Down) -> None:
        print(f"watcher got Down: actor={down.ref.url} reason={down.reason} ({down.detail})")
        self.down = down
        self.seen.set()

    @actors.handler
    async def watch(self, ref: actors.ActorRef) -> None:
        await self.monitor(ref)

    @actors.handler
    async def reason(self) -> str | None:
        return self.down.reason if self.down else None


async def serve(url_file: str) -> None:
    async with actors.open_system("victim", listen="127.0.0.1:0") as system:
        await system.spawn(Worker, name="worker")
        with open(url_file + ".tmp", "w") as f:
            f.write(system.url)
        os.replace(url_file + ".tmp", url_file)
        await trio.sleep_forever()


async def watch(url: str, peer: subprocess.Popen) -> None:
    async with actors.open_system("observer", heartbeat_timeout=2.0) as system:
        worker = await system.lookup(f"{url}/worker")
        print("worker runs in pid", await worker.ask("pid"))
        watcher = await system.spawn(Watcher, name="watcher")
        await watcher.ask("watch", worker)
        print(f"SIGKILL pid {peer.pid}")
        os.kill(peer.pid, signal.SIGKILL)
        peer.wait(timeout=10)
        with trio.fail_after(10):
            while await watcher.ask("reason") is None:
                await trio.sleep(0.02)


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
                    sys.exit("the victim process did not start")
                time.sleep(0.05)
            with open(url_file) as f:
                trio.run(watch, f.read(), peer)
        finally:
            if peer.poll() is None:
                peer.kill()
                peer.wait(timeout=10)


if __name__ == "__main__":
    main()
