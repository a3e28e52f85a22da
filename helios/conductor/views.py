"""What the CLI sees: the JSON shapes of docs/cli.md, built from the leader's cache.

Pure functions over a `ClusterState` (plus the last plan's pending slots), so the shapes are
unit-tested without a cluster and every listing is computed the same way whichever
conductor leads. Keys of docs/json.md are never renamed here; extra keys may be added
(the contract allows additions), e.g. `pending` in `job status` carries the scheduler's
explanation for slots that fit nowhere.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from helios.conductor.cron_runner import schedule_of
from helios.conductor.plan import ClusterState, Pending, RolloutStep
from helios.conductor.reschedule import Tracker, hold
from helios.cron import CronError
from helios.model import (
    FINISHED_STATES,
    Assignment,
    JobRecord,
    NodeInfo,
    TaskStatus,
    task_ready,
)

__all__ = [
    "endpoints",
    "job_inspect",
    "job_ls",
    "job_status",
    "job_summary_status",
    "job_versions",
    "kept_spec",
    "node_host",
    "nodes",
    "reschedule_waits",
    "rollout_progress",
    "template_runs",
]


def node_host(address: str) -> str:
    """`tcp://h:p`, `h:p` or `h` -> `h` (the host a service's ports are reachable on)."""
    rest = address.split("://", 1)[-1].split("/", 1)[0]
    host, sep, _port = rest.rpartition(":")
    return (host if sep else rest).strip("[]") or "127.0.0.1"


def _status_of(state: ClusterState, a: Assignment) -> TaskStatus | None:
    st = state.statuses.get(a.id)
    return st if st is not None and st.node == a.node else None


def _task_row(a: Assignment | None, st: TaskStatus | None) -> dict[str, Any]:
    """One task in docs/json.md's `job status` shape."""
    if st is not None:
        state = st.state
    elif a is not None and a.desired == "stop":
        state = "stopping"
    else:
        state = "pending"  # assigned, not reported yet
    ports: dict[str, int] = dict(st.ports) if st is not None and st.ports else \
        dict(a.ports) if a is not None else {}
    known = a if a is not None else st
    assert known is not None, "a task row has an assignment, a report or both"
    return {"id": known.id, "node": known.node, "state": state,
            # a lost task's last report may say healthy; its node is gone, so it is not
            "healthy": (False if state == "lost" and st is not None and st.healthy
                        is not None else st.healthy if st is not None else None),
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
    out.sort(key=_row_order)
    return out


def _row_order(row: tuple[Assignment | None, TaskStatus | None]) -> tuple[int, float, str]:
    """Assigned tasks by slot and age, then the unassigned ones by id."""
    a, st = row
    if a is not None:
        return a.index, a.created, a.id
    assert st is not None
    return 1 << 30, 0.0, st.id


def job_status(state: ClusterState, record: JobRecord,
               pending: Iterable[Pending] = (),
               steps: Iterable[RolloutStep] = (), now: float | None = None) -> dict[str, Any]:
    """`helios job status NAME --json`: the job's tasks, why any slot is pending, and
    (service jobs) the rollout's progress under the extra key `rollout` and the slots
    waiting to be rescheduled after a failure under `reschedule`."""
    tasks = [_task_row(a, st) for a, st in _job_tasks(state, record.name)]
    doc = {"name": record.name, "kind": record.spec.kind, "version": record.version,
           "tasks": tasks,
           "status": job_summary_status(state, record, now),
           "pending": [{"index": p.index, "reason": p.explanation, "kind": p.kind}
                       for p in pending if p.job == record.name]}
    if record.spec.kind in ("cron", "parameterized"):
        doc.update(template_runs(state, record, now))
    if record.spec.kind == "service":
        doc["rollout"] = rollout_progress(state, record, steps, now)
    if record.spec.kind in ("service", "batch") and now is not None:
        doc["reschedule"] = reschedule_waits(record, now)
    return doc


def template_runs(state: ClusterState, record: JobRecord,
                  now: float | None) -> dict[str, Any]:
    """A cron or parameterized job's runs (oldest first, each with its status) and, for
    cron, its next launch (None while stopped): what `nomad job status` shows of a
    periodic job's children, instead of the bare word `template`."""
    runs = sorted((r for r in state.jobs.values() if r.parent == record.name),
                  key=lambda r: (r.created, r.name))
    out: dict[str, Any] = {"runs": [{"name": r.name, "status": job_summary_status(state, r,
                                                                                  now),
                                     "created": r.created} for r in runs]}
    if record.spec.kind == "cron":
        nxt = None
        if now is not None and not record.stopped:
            try:
                tick = schedule_of(record).next_tick(datetime.fromtimestamp(now, UTC))
                nxt = tick.astimezone(UTC).isoformat().replace("+00:00", "Z")
            except CronError:
                nxt = None
        out["next_launch"] = nxt
    return out


def reschedule_waits(record: JobRecord, now: float) -> list[dict[str, Any]]:
    """The slots of a service that wait after a failure: until when (epoch seconds;
    None once its attempts are used up), seconds left, how many failures, and why."""
    policy = record.spec.reschedule
    out: list[dict[str, Any]] = []
    if record.stopped:
        return out  # nothing is placed again while the job is stopped
    for key, raw in sorted(record.reschedule.items()):
        if policy is None or not key.isdigit():
            continue
        h = hold(policy, Tracker.from_dict(raw), record.version, int(key), now)
        if h is not None:
            out.append({"index": h.index, "until": h.until,
                        "wait": None if h.until is None else round(max(0.0, h.until - now), 1),
                        "failures": h.attempt, "reason": h.explain(now)})
    return out


def rollout_progress(state: ClusterState, record: JobRecord,
                     steps: Iterable[RolloutStep] = (), now: float | None = None
                     ) -> dict[str, Any]:
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
        if st is not None and task_ready(spec, st, now):
            updated += 1
    done = updated >= spec.count and old == 0
    rollback = (record.failed_version is not None
                and record.failed_version == record.version - 1)
    if record.stopped:
        phase = "stopped"  # `job stop`: nothing is rolling any more
    elif record.failed_version == record.version and not (done and record.rolled_out
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


def job_summary_status(state: ClusterState, record: JobRecord,
                       now: float | None = None) -> str:
    """One word for `job ls`: stopped, running, deploying, complete, failed, pending.

    A service is `running` when `count` tasks of its current version run and are healthy
    (`model.task_ready`: its health check passes, or without one it has run for
    `update.min_healthy_time`); a batch job is `complete` once every slot exited 0,
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
        if a.version == record.version and st is not None and task_ready(spec, st, now):
            ready += 1
    if ready >= spec.count and len(mine) == spec.count:
        return "running"
    return "deploying" if mine else "pending"


def job_ls(state: ClusterState, now: float | None = None) -> list[dict[str, Any]]:
    """`helios job ls --json`: jobs with kind, count, running tasks."""
    return [{"name": r.name, "kind": r.spec.kind, "count": r.spec.count,
             "running": _running(state, r), "version": r.version,
             "status": job_summary_status(state, r, now)}
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
            c, m, k = used.get(a.node, (0.0, 0, 0))
            used[a.node] = (c + a.cpus, m + a.memory, k + 1)
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
    """`eligible` and `draining` (docs/cli.md), from the operator's drain record."""
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
        out.append({"task": a.id, "node": a.node,
                    "host": node.publish or node_host(node.address),
                    "ports": dict(st.ports)})
    return out


def kept_spec(record: JobRecord, version: Any) -> dict[str, Any] | None:
    """The spec (as stored) of a kept version of the job, or None."""
    for v in record.versions:
        if v.get("version") == version and isinstance(v.get("spec"), dict):
            return dict(v["spec"])
    return None


def job_versions(record: JobRecord) -> list[dict[str, Any]]:
    """`helios job versions NAME --json`: the kept versions, newest first, with what each
    changed from the one before it (top-level fields of the job file), whether it is the
    current one, whether it once ran healthy in every slot (`stable`, services), and
    whether its rollout failed."""
    out = []
    prev: dict[str, Any] | None = None
    for v in record.versions:
        raw = v.get("spec")
        spec: dict[str, Any] = raw if isinstance(raw, dict) else {}
        keys = sorted(set(spec) | set(prev or {}))
        changes = [k for k in keys if k != "name" and (prev or {}).get(k) != spec.get(k)]
        n = v.get("version")
        out.append({"version": n, "submitted": v.get("submitted"),
                    "current": n == record.version,
                    "stable": isinstance(n, int) and record.rolled_out >= n
                    and record.failed_version != n,
                    "failed": n == record.failed_version,
                    "changes": changes if prev is not None else ["created"]})
        prev = spec
    return list(reversed(out))


def job_inspect(record: JobRecord) -> dict[str, Any]:
    """`helios job inspect NAME --json`: the stored spec of the current version (the
    job file as Helios normalised it), a registry password redacted."""
    spec = record.spec.to_dict()
    if isinstance(spec.get("registry_auth"), dict) and "password" in spec["registry_auth"]:
        spec["registry_auth"] = {**spec["registry_auth"], "password": "<redacted>"}
    return {"name": record.name, "version": record.version, "spec": spec}
