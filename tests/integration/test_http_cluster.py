"""The HTTP API, metrics and event stream of a real cluster: two `helios conductor`
processes (both serving HTTP) and two `helios node` processes (process runtime, serving
`/metrics`) on a real ZooKeeper.

- a standby answers reads and forwards a write to the leader: a job sent to the standby
  runs;
- `/metrics` parses on conductors and nodes, `helios_is_leader` names the leader, and the
  counters move after a deploy, a leader kill and a node failover;
- an event stream followed on the standby, cut and resumed from its last index across a
  SIGKILL of the leader, misses and repeats nothing (checked against a full read of the
  log at the end) and shows the new leader and the node going down.

No assertion is about speed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.common import free_port, unique_name
from tests.helios.http.support import EventFollower, get_json, ndjson, request
from tests.integration.procs import Proc, eventually, processes
from tests.integration.test_cluster import diag

pytestmark = [pytest.mark.zookeeper, pytest.mark.slow]

SESSION = "3"


def conductor(name: str, zk: str, tmp: Path, http: str) -> Proc:
    return Proc(name, ["conductor", "--zk", zk, "--listen", f"127.0.0.1:{free_port()}",
                       "--name", name, "--session-timeout", SESSION,
                       "--failover-grace", "1", "--http", http], tmp).start()


def node(name: str, zk: str, tmp: Path, metrics: str) -> Proc:
    return Proc(name, ["node", "--zk", zk, "--name", name, "--cpus", "2", "--memory", "1G",
                       "--runtime", "process", "--state-dir", str(tmp / name),
                       "--session-timeout", SESSION, "--metrics", metrics], tmp).start()


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    a = request("GET", f"{url}/metrics")
    assert a.status == 200
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(a.body.decode()) for s in fam.samples}


def leading(url: str) -> bool:
    try:
        return get_json(f"{url}/v1/leader")["leader"] is True
    except Exception:
        return False


def test_standby_forwards_metrics_move_and_events_resume_across_a_leader_kill(
        zk_hosts: str, zk_root: str, tmp_path: Path) -> None:
    zk = f"{zk_hosts}{zk_root}"
    https = {n: f"127.0.0.1:{free_port()}" for n in ("c1", "c2")}
    urls = {n: f"http://{h}" for n, h in https.items()}
    names = [unique_name("n") for _ in range(2)]
    node_metrics = {n: f"127.0.0.1:{free_port()}" for n in names}
    job = unique_name("web")
    with processes() as procs:
        cs = {n: conductor(n, zk, tmp_path, https[n]) for n in ("c1", "c2")}
        procs.extend(cs.values())
        nodes = {n: node(n, zk, tmp_path, node_metrics[n]) for n in names}
        procs.extend(nodes.values())
        leader = eventually(lambda: next((n for n in cs if leading(urls[n])), None), 60,
                            "a leader", diagnostics=lambda: diag(procs))
        standby = next(n for n in cs if n != leader)
        eventually(lambda: len([x for x in get_json(f"{urls[standby]}/v1/nodes")
                                if x["status"] == "up"]) == 2, 60, "2 nodes up",
                   diagnostics=lambda: diag(procs))

        # a follower of the stream on the standby, from the very start of the log
        follower = EventFollower(urls[standby])

        # a write to the standby is made by the leader; reads answer the same
        spec = {"name": job, "kind": "service", "command": ["sleep", "60"], "count": 2,
                "restart": {"policy": "always"}, "spread": True, "grace": "0s",
                "resources": {"cpus": 0.1, "memory": "8M"}}
        a = request("POST", f"{urls[standby]}/v1/jobs", spec)
        assert a.status == 200, a.body
        eventually(lambda: len([t for t in get_json(f"{urls[standby]}/v1/jobs/{job}")[
            "tasks"] if t["state"] == "running"]) == 2, 60, "2 tasks running",
            diagnostics=lambda: diag(procs))
        for path in ("/v1/jobs", f"/v1/jobs/{job}", "/v1/nodes"):
            eventually(lambda path=path: get_json(urls[standby] + path)
                       == get_json(urls[leader] + path), 20, f"{path} same on both")
        assert get_json(f"{urls[standby]}/v1/leader")["leader"] is False

        m_leader, m_standby = scrape(urls[leader]), scrape(urls[standby])
        assert m_leader[("helios_is_leader", ())] == 1.0
        assert m_standby[("helios_is_leader", ())] == 0.0
        assert m_leader[("helios_placements_total", ())] >= 2
        assert m_leader[("helios_tasks", (("job", job), ("state", "running")))] == 2
        for n in names:
            m = scrape(f"http://{node_metrics[n]}")
            assert m[("helios_node_tasks", (("state", "running"),))] == 1
            assert ("actors_connections", ()) in m

        # the leader dies; the standby takes over, its counters start moving
        cs[leader].kill()
        eventually(lambda: leading(urls[standby]), 60, "the standby leads",
                   diagnostics=lambda: diag(procs))
        before = scrape(urls[standby])
        assert before[("helios_is_leader", ())] == 1.0

        # cut the stream and resume from its last index
        first = follower.cut()
        assert first, "the follower saw nothing"
        follower = EventFollower(urls[standby], first[-1]["index"])

        # a node dies: its task is placed on the other one (a failover, counted)
        victim = names[0]
        nodes[victim].kill()
        eventually(lambda: scrape(urls[standby]).get(("helios_node_failovers_total", ()),
                                                     0) >= 1, 60, "a failover counted",
                   diagnostics=lambda: diag(procs))
        eventually(lambda: len([t for t in get_json(f"{urls[standby]}/v1/jobs/{job}")[
            "tasks"] if t["state"] == "running"]) == 2, 60, "2 running again",
            diagnostics=lambda: diag(procs))
        after = scrape(urls[standby])
        assert after[("helios_placements_total", ())] > before.get(
            ("helios_placements_total", ()), 0)
        # the killed node comes back (and stops its orphaned copy)
        nodes[victim] = node(victim, zk, tmp_path, node_metrics[victim])
        procs.append(nodes[victim])

        def settled() -> Any:
            seen = first + follower.events
            return seen if any(e["topic"] == "node" and e["type"] == "up"
                               and e["node"] == victim and e["index"] > first[-1]["index"]
                               for e in seen) else None

        seen = eventually(settled, 60, "the node's return in the stream",
                          diagnostics=lambda: diag(procs))
        seen = first + follower.cut()
        full = ndjson(request("GET", f"{urls[standby]}/v1/events").body)

        indexes = [e["index"] for e in seen]
        assert indexes == sorted(set(indexes)), "an event came twice or out of order"
        assert seen == [e for e in full if e["index"] <= indexes[-1]], "an event was missed"
        kinds = {(e["topic"], e["type"], e["node"]) for e in seen}
        assert ("node", "down", victim) in kinds
        assert sum(1 for e in seen if e["topic"] == "leader") >= 2  # both terms
        assert any(e["topic"] == "task" and e["type"] == "lost" for e in seen)
        assert request("DELETE", f"{urls[standby]}/v1/jobs/{job}").status == 200
