"""A client that finds a service's healthy endpoints and follows them as they change.

    python examples/service_client.py                        # self-contained demo
    python examples/service_client.py --zk 127.0.0.1:2181[/root] --job web [--port http]
    python examples/service_client.py --store /var/lib/helios/store.db --job web

The demo opens an embedded store in a temporary file, plays the node's part (two tiny
HTTP servers registered as endpoints of `web`, later one drained), and sends requests
round-robin through a `Resolver`, which keeps the list current from the store's watches.
Against a cluster (`--zk HOSTS[/root]`, root /helios by default) or a `helios solo`
store file, it prints the endpoints of `--job` on every change and sends one GET to each
new list's next endpoint.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helios.config import split_zk
from helios.coordination import Store, open_embedded, open_zookeeper
from helios.endpoints import (
    Resolver,
    drain_endpoint,
    follow_endpoints,
    register_endpoint,
)


async def http_get(host: str, port: int) -> str:
    """The first line of a GET / answer (enough to see who answered)."""
    stream = await trio.open_tcp_stream(host, port)
    async with stream:
        await stream.send_all(f"GET / HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        data = b""
        while chunk := await stream.receive_some(4096):
            data += chunk
    return data.split(b"\r\n\r\n", 1)[-1].decode(errors="replace").strip()


async def tiny_http_server(name: str, task_status=trio.TASK_STATUS_IGNORED) -> None:
    async def handle(stream: trio.SocketStream) -> None:
        async with stream:
            await stream.receive_some(4096)
            body = f"hello from {name}".encode()
            await stream.send_all(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s"
                                  % (len(body), body))

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(handle, listeners)


async def demo() -> None:
    with tempfile.TemporaryDirectory() as d:
        node = await open_embedded(Path(d) / "store.db")     # the node's session
        client = await open_embedded(Path(d) / "store.db")   # the client's session
        async with node, client, trio.open_nursery() as nursery:
            for task in ("web-1a", "web-2b"):                # the node: healthy -> register
                port = await nursery.start(tiny_http_server, task)
                await register_endpoint(node, "web", task, "n1", "127.0.0.1", {"http": port})
            async with Resolver.open(client, "web") as resolver:
                print("endpoints:", [(e["task"], e["ports"]["http"]) for e in resolver.endpoints])
                for _ in range(4):
                    ep = await resolver.next()
                    print("  ->", await http_get(ep["host"], ep["ports"]["http"]))
                print("draining web-1a (deregister, wait grace, then it could stop)")
                await drain_endpoint(node, "web", "web-1a", "n1", grace=0.2)
                for _ in range(2):
                    host, port = resolver.address("http")
                    print("  ->", await http_get(host, port))
            nursery.cancel_scope.cancel()


async def follow(store: Store, job: str, port_name: str) -> None:
    async with store:
        async for endpoints in follow_endpoints(store, job):
            print(f"{job}: {len(endpoints)} healthy endpoint(s)")
            for ep in endpoints:
                print(f"  {ep['task']:<20} {ep['node']:<12} {ep['host']} {ep['ports']}")
            with_port = [ep for ep in endpoints if port_name in ep["ports"]]
            if with_port:
                ep = with_port[0]
                try:
                    with trio.fail_after(2):
                        print("  GET ->", await http_get(ep["host"], ep["ports"][port_name]))
                except (OSError, trio.TooSlowError) as e:
                    print("  GET failed:", e)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    where = ap.add_mutually_exclusive_group()
    where.add_argument("--zk", help="ZooKeeper hosts of a cluster, HOSTS[/root] "
                                    "(root /helios by default)")
    where.add_argument("--store", help="a `helios solo` store file (root /helios)")
    ap.add_argument("--job", default="web")
    ap.add_argument("--port", default="http", help="named port to send a GET to")
    args = ap.parse_args()

    async def run() -> None:
        if args.zk:
            hosts, root = split_zk(args.zk)  # HOSTS/root, as every helios command takes
            await follow(await open_zookeeper(hosts, root), args.job, args.port)
        elif args.store:
            await follow(await open_embedded(args.store, "/helios"), args.job, args.port)
        else:
            await demo()

    try:
        trio.run(run)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
