"""What delivering secrets costs the leader: `ConductorSecrets.attach` for one push of
T tasks that each refer to N secrets, on the embedded store (`helios solo`), no target.

    python bench/secrets_bench.py [-n 10] [-t 50] [--rounds 20]

Per push the leader reads and opens each secret the pushed tasks name once (read from
the store, AES-GCM decrypt, key file read), then copies the values into each task's
message. Printed: milliseconds per push, and per secret opened.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import trio

from helios.coordination import open_embedded
from helios.model import Assignment
from helios.secrets.keyring import Keyring
from helios.secrets.resolve import ConductorSecrets
from helios.secrets.store import SecretAdmin
from helios.spec import validate


async def main(n: int, tasks: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        key = Path(tmp, "secret.key")
        Keyring.create(key)
        store = await open_embedded(Path(tmp, "helios.db"))
        try:
            secrets = ConductorSecrets(str(key))
            admin = SecretAdmin(store, store.transaction, secrets.keyring)
            for i in range(n):
                await admin.set(f"s{i}", f"value-{i}-" + "x" * 32)
            spec = validate({"name": "bench", "image": "busybox",
                             "env": {f"S{i}": {"secret": f"s{i}"} for i in range(n)}})
            spec = await secrets.stamp(store, spec)
            assigned = [Assignment(id=f"bench-{t}", job="bench", version=1, node="n1",
                                   spec=spec) for t in range(tasks)]
            dicts = [a.to_dict() for a in assigned]
            times = []
            for _ in range(rounds):
                t0 = time.perf_counter()
                out = await secrets.attach(store, assigned, dicts)
                times.append(time.perf_counter() - t0)
            assert all(len(d["secrets"]) == n for d in out)
        finally:
            await store.aclose()
    med = statistics.median(times) * 1000
    print(f"attach: {tasks} tasks x {n} secrets: {med:.2f} ms per push (median of "
          f"{rounds}), {med / n:.3f} ms per secret opened")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=10, help="secrets per task")
    ap.add_argument("-t", type=int, default=50, help="tasks in the push")
    ap.add_argument("--rounds", type=int, default=20)
    args = ap.parse_args()
    trio.run(main, args.n, args.t, args.rounds)
