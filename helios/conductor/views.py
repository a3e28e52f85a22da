"""What the CLI sees: the JSON shapes of CONTRACT.md section 2, built from the leader's cache.

Pure functions over a `ClusterState` (plus the last plan's pending slots), so the shapes are
unit-tested without a cluster and every listing is computed the same way whichever
conductor leads. Keys of CONTRACT.md are never renamed here; extra keys may be added
(the contract allows additions), e.g. `pending` in `job status` carries the scheduler's
explanation for slots that fit nowhere.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from helios.conductor.plan import ClusterState, Pending, RolloutStep
from helios.model import FINISHED_STATES, Assignment, JobRecord, NodeInfo, TaskStatus

__all__ = ["endpoints", "job_ls", "job_status", "job_summary_status", "node_host", "nodes",
           "rollout_progress"]


def node_host(address: str) -> str:
    """`tcp://h:p`, `h:p` or `h` -> `h` (the host a service's ports are reachable on)."""
    rest = address.split("://", 1)[-1].split("/", 1)[0]
    host, sep, _port = rest.rpartition(":")
    return (host if sep else rest).strip("[]") or "127.0.0.1"


def _status_of(state: ClusterState, a: Assignment) -> TaskStatus | None:
    st = state.statuses.get(a.id)
    return st if st is not None and st.node == a.node else None


def _task_row(a: Assignment | None, st: TaskStatus | None) -> dict[str, Any]:
    """One task in CONTRACT.md's `job status` shape."""
    if st is not None:
        state = st.state
    elif a is not None and a.desired == "stop":
        state = "stopping"
    else:
        state = "pending"  # assigned, not reported yet
    ports: dict[str, int] = dict(st.ports) if st is not None and st.ports else \
        dict(a.ports) if a is not None else {}
    return {"id": a.id if a is not None else st.id,  # type: ignore[union-attr]
            "node": a.node if a is not None else st.node,  # type: ignore[union-attr]
            "state": state,
            "healthy": st.healthy if st is not None else None,
            "container": st.container if st is not None else None,
            "ports": ports}


def _job_tasks(state: ClusterState, job: str) -> list[tuple[Assignment | None,
                                                            TaskStatus | None]]:
    out: list[tuple[Assignment | None, TaskStatus | None]] = []
    owned: set[tuple[str, str]] = set()
    for a in state.assignments.values():
        if a.job == job:
            owned.add((a.id, a.node))
            out.append((a, _status_of(state, a)))
    for st in state.statuses.values():
        if st.job == job and (st.id, st.node) not in owned:
            out.append((None, st))  # an orphan copy being stopped, or a lost task
    out.sort(key=lambda t: ((t[0].index if t[0] else 1 << 30),
                            (t[0].created if t[0] else 0.0),
                            t[0].id if t[0] else t[1].id))  # type: ignore[union-attr]
    return out


def job_status(state: ClusterState, record: JobRecord,
               pending: Iterable[Pending] = (),
               steps: Iterable[RolloutStep] = ()) -> dict[str, Any]:
    """`helios job status NAME --json`: the job's tasks, why any slot is pending, and
    (service jobs) the rollout's progress under the extra key `rollout`."""
    tasks = [_task_row(a, st) for a, st in _job_tasks(state, record.name)]
    doc = {"name": record.name, "kind": record.spec.kind, "version": record.version,
           "tasks": tasks,
           "status": job_summary_status(state, record),
           "pending": [{"index": p.index, "reason": p.explanation}
                       for p in pending if p.job == record.name]}
    if record.spec.kind == "service":
        doc["rollout"] = rollout_progress(state, record, steps)
    return doc


def rollout_progress(state: ClusterState, record: JobRecord,
                     steps: Iterable[RolloutStep] = ()) -> dict[str, Any]:
    """Where the job's latest version stands, from the state alone (so every leader shows
    the same): `updated` of `total` slots run a healthy task of the current version,
    `old` tasks of other versions still run. `state` is `complete`, `rolling`, `failed`
    (halted, no rollback), `rolling back` / `rolled back` (this version restores the
    one that failed, `failed_version`). `steps` are the last plan's slot actions."""
    spec = record.spec
    fp = spec.fingerprint()
    updated = old = 0
    for a in state.assignments.values():
        if a.job != record.name or a.desired != "run" or a.index >= spec.count:
            continue
        if a.fingerprint != fp:
            old += 1
            continue
        st = _status_of(state, a)
        if (st is not None and st.state == "running"
                and (spec.health is None or st.healthy is True)):
            updated += 1
    done = updated >= spec.count and old == 0
    rollback = (record.failed_version is not None
                and record.failed_version == record.version - 1)
    if record.failed_version == record.version and not (done and record.rolled_out
                                                        == record.version):
        # (a version that failed its deadline for lack of room and then found it has
        # run in every slot: it is out, whatever its deadline said)
        phase = "failed"
    elif rollback:
        phase = "rolled back" if done else "rolling back"
    else:
        phase = "complete" if done else "rolling"
    return {"version": record.version, "state": phase, "updated": min(updated, spec.count),
            "total": spec.count, "old": old, "parallel": spec.update.parallel,
            "failed_version": record.failed_version,
            "failure": (record.failure or None) if record.failed_version is not None else None,
            "steps": [{"index": s.index, "old": s.old, "new": s.new, "action": s.action}
                      for s in steps if s.job == record.name]}


def _running(state: ClusterState, record: JobRecord) -> int:
    n = 0
    for a in state.assignments.values():
        if a.job == record.name and a.desired == "run":
            st = _status_of(state, a)
            if st is not None and st.state == "running":
                n += 1
    return n


def job_summary_status(state: ClusterState, record: JobRecord) -> str:
    """One word for `job ls`: stopped, running, deploying, complete, failed, pending.

    A service is `running` when `count` tasks of its current version run (and are healthy
    where it has a health check); a batch job is `complete` once every slot exited 0,
    `failed` once every slot finished and one failed.
    """
    spec = record.spec
    if record.stopped:
        return "stopped"
    if spec.kind in ("cron", "parameterized"):
        return "template"
    mine = [(a, _status_of(state, a)) for a in state.assignments.values()
            if a.job == record.name and a.desired == "run"]
    if spec.kind == "batch":
        finished = [st for a, st in mine if st is not None and st.state in FINISHED_STATES]
        slots = {a.index for a, st in mine
                 if st is not None and st.state in ("exited", "failed")}
        if len(slots) >= spec.count:
            return "failed" if any(st.state == "failed" for st in finished) else "complete"
        return "running" if mine else "pending"
    ready = 0
    for a, st in mine:
        if (a.version == record.version and st is not None and st.state == "running"
                and (spec.health is None or st.healthy is True)):
            ready += 1
    if ready >= spec.count and len(mine) == spec.count:
        return "running"
    return "deploying" if mine else "pending"


def job_ls(state: ClusterState) -> list[dict[str, Any]]:
    """`helios job ls --json`: jobs with kind, count, running tasks."""
    return [{"name": r.name, "kind": r.spec.kind, "count": r.spec.count,
             "running": _running(state, r), "version": r.version,
             "status": job_summary_status(state, r)}
            for r in sorted(state.jobs.values(), key=lambda r: r.name)]


def _occupies(state: ClusterState, a: Assignment) -> bool:
    """Whether `a` still holds resources on its node (its container is not gone)."""
    st = _status_of(state, a)
    if st is not None:
        return st.state not in FINISHED_STATES and st.state != "lost"
    return a.desired == "run"


def nodes(state: ClusterState) -> list[dict[str, Any]]:
    """`helios nodes --json`: name, up/down, address, resources free/total, labels, tasks."""
    used: dict[str, tuple[float, int, int]] = {}
    for a in state.assignments.values():
        if _occupies(state, a):
            c, m, n = used.get(a.node, (0.0, 0, 0))
            used[a.node] = (c + a.cpus, m + a.memory, n + 1)
    out = []
    for n in sorted(state.nodes.values(), key=lambda n: n.name):
        c, m, count = used.get(n.name, (0.0, 0, 0))
        out.append({"name": n.name, "status": n.status, "address": _plain_address(n),
                    "cpus": float(n.cpus), "memory": int(n.memory),
                    "cpus_free": round(max(0.0, n.cpus - c), 3),
                    "memory_free": max(0, n.memory - m),
                    "labels": dict(n.labels), "tasks": count,
                    **_drain_flags(state, n.name)})
    return out


def _drain_flags(state: ClusterState, name: str) -> dict[str, bool]:
    """`eligible` and `draining` (CONTRACT §7), from the operator's drain record."""
    d = state.drains.get(name)
    return {"eligible": d is None or bool(d.eligible),
            "draining": d is not None and bool(d.draining)}


def _plain_address(n: NodeInfo) -> str:
    return n.address.split("://", 1)[-1].rstrip("/")


def endpoints(state: ClusterState, record: JobRecord,
              node_map: Mapping[str, NodeInfo] | None = None) -> list[dict[str, Any]]:
    """`helios endpoints NAME --json`: running (and healthy, if checked) tasks' ports."""
    node_map = state.nodes if node_map is None else node_map
    out = []
    for a, st in _job_tasks(state, record.name):
        if a is None or st is None or a.desired != "run" or st.state != "running":
            continue
        if st.healthy is False or (record.spec.health is not None and st.healthy is not True):
            continue
        node = node_map.get(a.node)
        if node is None or not node.up:
            continue
        out.append({"task": a.id, "node": a.node, "host": node_host(node.address),
                    "ports": dict(st.ports)})
    return out
