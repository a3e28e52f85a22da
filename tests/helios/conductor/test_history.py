"""Job history in the store: batches appended in order, trimmed to a bound, read back
newest last."""

from __future__ import annotations

from pathlib import Path

from helios.conductor.history import History, event, read_history
from helios.coordination import init_cluster, open_embedded, paths


async def test_history_appends_in_order_and_stays_bounded(tmp_path: Path) -> None:
    async with await open_embedded(tmp_path / "h.db") as store:
        await init_cluster(store)
        h = History(store, keep=4)
        dirs: set[str] = set()
        for i in range(12):
            h.add(event("web", f"web-{i}", "n1", "running", at=1000.0 + i))
            h.add(event("api", f"api-{i}", "n1", "stopped", at=1000.0 + i))
            await store.transaction(await h.take_ops(dirs))
            trim = await h.trim_ops()
            if trim:
                await store.transaction(trim)
        assert len(await store.children(paths.history("web"))) <= 5
        events = await read_history(store, "web")
        assert [e["task"] for e in events] == [f"web-{i}" for i in range(12 - len(events), 12)]
        assert len(events) >= 4
        assert all(e["job"] == "web" for e in events)
        assert await read_history(store, "nope") == []
        assert (await read_history(store, "api", limit=2))[-1]["task"] == "api-11"
