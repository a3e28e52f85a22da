"""A throwaway actor-system process for chaos tests: `python -m tests.chaos.peer URL_FILE`.

It hosts a supervision tree (`sup` -> `w0..w3`) and writes its URL to URL_FILE once ready.
Tests SIGKILL it by its PID.
"""

from __future__ import annotations

import os
import sys

import trio

import actors


class Worker(actors.Actor):
    @actors.handler
    async def work(self, seconds: float = 0.0) -> int:
        await trio.sleep(seconds)
        return os.getpid()


async def main(url_file: str) -> None:
    async with actors.open_system("peer", listen="127.0.0.1:0", heartbeat_interval=0.2,
                                  heartbeat_timeout=1.0) as system:
        await system.spawn(actors.Supervisor, name="sup",
                           children=[actors.child(Worker, name=f"w{i}") for i in range(4)])
        with open(url_file + ".tmp", "w") as f:
            f.write(system.url)
        os.replace(url_file + ".tmp", url_file)
        await trio.sleep_forever()


if __name__ == "__main__":
    trio.run(main, sys.argv[1])
