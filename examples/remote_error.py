"""An exception in another process reaches the caller as `actors.RemoteError`.

    python examples/remote_error.py

The error keeps the original type name, message and the remote traceback text; the
failing actor crashes (let it crash) and its supervisor restarts it.
"""

from __future__ import annotations

import trio

import actors


class Parser(actors.Actor):
    @actors.handler
    async def parse(self, text: str) -> int:
        return int(text)


async def main() -> None:
    async with actors.open_system("server", listen="127.0.0.1:0") as server, \
            actors.open_system("client") as client:
        await server.spawn(actors.Supervisor, name="sup",
                           children=[actors.child(Parser, name="parser")])
        parser = await client.lookup(f"{server.url}/parser")
        print("parse('42') =", await parser.ask("parse", "42"))
        try:
            await parser.ask("parse", "forty-two")
        except actors.RemoteError as e:
            print(f"RemoteError: type={e.type_name} message={e.message!r}")
            print("remote traceback, last line:", e.traceback.strip().splitlines()[-1])
        with trio.fail_after(5):  # the supervisor restarts the parser
            while True:
                try:
                    print("after the restart, parse('7') =", await parser.ask("parse", "7"))
                    break
                except actors.ActorNotFound:
                    await trio.sleep(0.01)


if __name__ == "__main__":
    trio.run(main)
