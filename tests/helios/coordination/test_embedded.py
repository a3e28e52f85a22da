"""Embedded-store specifics: a crashed process's ephemerals are cleaned at the next open,
and the data survives a restart."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from helios.coordination import open_embedded, paths

CRASHER = textwrap.dedent("""
    import os, signal, sys, trio
    from helios.coordination import open_embedded

    async def main(file):
        store = await open_embedded(file, "/helios")
        await store.create("/nodes/solo/up", {"pid": os.getpid()}, ephemeral=True)
        await store.create("/jobs/web", {"image": "x"})
        os.kill(os.getpid(), signal.SIGKILL)     # crash without closing

    trio.run(main, sys.argv[1])
""")


async def test_crashed_process_ephemerals_removed_at_open(tmp_path: Path) -> None:
    file = tmp_path / "solo.db"
    repo = Path(__file__).parents[3]
    proc = subprocess.run([sys.executable, "-c", CRASHER, str(file)], timeout=60,
                          env={**os.environ, "PYTHONPATH": str(repo)})
    assert proc.returncode == -9
    store = await open_embedded(file)
    try:
        assert not await store.exists(paths.node_up("solo"))       # cleaned at open
        assert (await store.get(paths.job("web"))).value == {"image": "x"}   # kept
    finally:
        await store.aclose()


async def test_data_survives_reopen(tmp_path: Path) -> None:
    file = tmp_path / "solo.db"
    store = await open_embedded(file)
    await store.create("/cron/nightly", {"tick": 42})
    await store.create("/services/web/t1", {"port": 1}, ephemeral=True)
    await store.aclose()
    store = await open_embedded(file)
    try:
        assert (await store.get("/cron/nightly")).value == {"tick": 42}
        assert await store.children("/services/web") == []
    finally:
        await store.aclose()
