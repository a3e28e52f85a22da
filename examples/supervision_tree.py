"""A counter in a supervision tree: kill a child, watch the supervisor restart it.

    python examples/supervision_tree.py

  app (one_for_one)
  |-- counter      permanent: always restarted, state starts afresh
  `-- workers (rest_for_one)
      |-- db       restarting it restarts everything after it
      `-- cache
"""

from __future__ import annotations

import trio

import actors


class Counter(actors.Actor):
    def __init__(self, start: int = 0) -> None:
        self.n = start

    @actors.handler
    async def incr(self) -> int:
        self.n += 1
        return self.n

    @actors.handler
    async def crash(self) -> None:
        raise RuntimeError("simulated bug")


class Worker(actors.Actor):
    async def on_start(self) -> None:
        print(f"  {self.name} started")


async def show(system: actors.ActorSystem, sup: str) -> None:
    for c in await system.ref(sup).ask("which_children"):
        print(f"  {sup}/{c['name']:8} restart={c['restart']:9} running={c['running']} "
              f"restarts={c['restarts']}")


async def settle(system: actors.ActorSystem, sup: str, restarts: int) -> None:
    """Exits reach a supervisor as messages: wait (bounded) until it has acted."""
    with trio.fail_after(5):
        while sum(c["restarts"] for c in await system.ref(sup).ask("which_children")) < restarts:
            await trio.sleep(0.01)


async def main() -> None:
    async with actors.open_system("tree") as system:
        workers = actors.child(actors.Supervisor, name="workers", strategy="rest_for_one",
                               children=[actors.child(Worker, name="db"),
                                         actors.child(Worker, name="cache")])
        await system.spawn(actors.Supervisor, name="app", strategy="one_for_one",
                           max_restarts=5, within=10.0,
                           children=[actors.child(Counter, 0, name="counter"), workers])
        counter = system.ref("counter")
        for _ in range(3):
            await counter.ask("incr")
        print("counter is at", await counter.ask("incr"))
        print("crashing the counter:")
        try:
            await counter.ask("crash")
        except actors.RemoteError as e:
            print(f"  the caller sees {e.type_name}: {e.message}")
        await settle(system, "app", 1)
        print("after the restart the counter is at", await counter.ask("incr"))
        await show(system, "app")
        print("killing db (rest_for_one restarts db, then cache):")
        await system.ref("db").kill()
        await settle(system, "workers", 2)
        await show(system, "workers")


if __name__ == "__main__":
    trio.run(main)
