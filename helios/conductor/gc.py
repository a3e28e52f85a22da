"""Garbage collection of what the cluster no longer needs: pure decisions, no I/O.

Cron jobs and parameterized jobs make *runs*: batch JobRecords with `parent` set (see
`cron_runner`, `dispatch`). Without collection a per-minute cron job grows ZooKeeper by
a run record, its assignments, statuses and history every minute, forever. The policy is
the one Kubernetes users know from a CronJob's `successfulJobsHistoryLimit` and
`ttlSecondsAfterFinished`, and Nomad users from `job_gc_threshold`:

- a run is **finished** once it is stopped, or every slot `0..count-1` has exited or
  failed for good, AND none of its tasks is still active (a copy still starting,
  running or stopping). A run that is still going is never collected;
- per parent, the newest `keep_runs` finished runs are kept (newest by creation) and
  older finished runs are collected;
- any finished run is collected once it finished more than `run_retention` seconds ago
  (when it finished: the newest end among its tasks' reports; its creation time when no
  report is left);
- the runs of a parent that no longer exists are stopped (cascading delete) and
  collected as soon as they are finished, whatever the two limits say.

Collecting a run deletes its JobRecord and its history; the reconciler then forgets its
assignments and statuses (a job that no longer exists keeps no finished task).

**Idempotency keys** (`/dispatch/<job>/<hash>`, see `dispatch`) are collected once they
are older than `key_ttl` AND their run no longer exists: while the run exists a retry
with the same key still gets that run back; after both, a retry starts a new run.

**Histories of removed jobs** (`orphan_histories`) go once the job has been gone for
`run_retention`, so `helios job history` answers for a while after `job rm`.

**Removed nodes** (`helios node rm`): `node_leftovers` lists the znodes of a node to
delete, and `stale_node_dirs` the empty per-node directories left behind once the last
records on them are gone. **Endpoint directories** (`/services/<job>/<node>`, made for
each node given a task of a service) go once no task of that job is assigned to that
node any more, and `/services/<job>` once its job is gone too (`stale_service_dirs`).

Every decision is bounded (`max_runs_per_pass`, `max_keys_per_pass`), oldest first, so
one pass never writes without limit; the rest waits for the next pass.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from helios.coordination import paths
from helios.model import ACTIVE_STATES, FINISHED_STATES, Assignment, JobRecord, NodeInfo, TaskStatus
from helios.units import format_duration

__all__ = [
    "Collect",
    "GCPolicy",
    "KeyRecord",
    "RunsGC",
    "expired_keys",
    "node_leftovers",
    "orphan_histories",
    "plan_runs",
    "run_finished_at",
    "stale_node_dirs",
    "stale_service_dirs",
]

DAY = 86400.0


@dataclass(frozen=True)
class GCPolicy:
    """The conductor's collection policy (`helios conductor --gc-keep-runs ...`)."""

    #: finished runs kept per parent, newest first
    keep_runs: int = 10
    #: seconds after which a finished run is collected
    run_retention: float = DAY
    #: seconds an idempotency key is kept at least (and as long as its run exists)
    key_ttl: float = DAY
    #: runs collected (or stopped) per pass at most; the rest waits for the next pass
    max_runs_per_pass: int = 100
    #: idempotency keys deleted per sweep at most
    max_keys_per_pass: int = 500
    #: seconds between two collection passes at least
    interval: float = 1.0

    def __post_init__(self) -> None:
        if self.keep_runs < 0:
            raise ValueError("keep_runs must be >= 0")
        for name in ("run_retention", "key_ttl", "interval"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be a number of seconds >= 0")
        if self.max_runs_per_pass < 1 or self.max_keys_per_pass < 1:
            raise ValueError("the per-pass bounds must be >= 1")

    @property
    def key_sweep_interval(self) -> float:
        """How often idempotency keys are looked at: a quarter of their TTL, between
        0.5 s and 60 s (a key lives at most that much longer than its TTL)."""
        return min(60.0, max(0.5, self.key_ttl / 4))


# --------------------------------------------------------------------------- runs


def run_finished_at(run: JobRecord, tasks: Iterable[Assignment],
                    statuses: Iterable[TaskStatus],
                    up: Collection[str]) -> float | None:
    """When `run` finished (epoch seconds), or None while it is still going.

    `tasks` are the run's assignments, `statuses` the reports whose job is the run
    (owned by an assignment or not), `up` the names of the nodes that are up. A task
    counts as active while its report is in an active state, or, not reported yet,
    while its node is up (it may be starting now). A task lost with its node is not
    active: the reconciler replaces or forgets it."""
    tasks = list(tasks)
    statuses = list(statuses)
    by_id = {st.id: st for st in statuses}
    done: set[int] = set()
    for a in tasks:
        st = by_id.get(a.id)
        if st is not None and st.node != a.node:
            st = None
        if st is None:
            if a.node in up:
                return None  # placed, not reported yet
            continue
        if st.state in ("exited", "failed"):
            done.add(a.index)
    if any(st.state in ACTIVE_STATES for st in statuses):
        return None
    if not run.stopped and not all(i in done for i in range(run.spec.count)):
        return None
    ends = [st.finished or st.since or st.updated for st in statuses
            if st.state in FINISHED_STATES]
    ends = [t for t in ends if t]
    return max(ends) if ends else run.created


@dataclass(frozen=True)
class Collect:
    """One run to collect, and why (for its parent's history)."""

    run: str
    parent: str
    reason: str
    finished: float


@dataclass
class RunsGC:
    """One pass's decisions: `stop` the runs of removed parents that still go (cascade),
    `collect` finished runs (oldest first). Both bounded by the policy."""

    stop: list[str] = field(default_factory=list)
    collect: list[Collect] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.stop or self.collect)

    def by_parent(self) -> dict[str, list[Collect]]:
        out: dict[str, list[Collect]] = {}
        for c in self.collect:
            out.setdefault(c.parent, []).append(c)
        return out


def plan_runs(jobs: Mapping[str, JobRecord], assignments: Mapping[str, Assignment],
              statuses: Mapping[str, TaskStatus], nodes: Mapping[str, NodeInfo],
              now: float, policy: GCPolicy) -> RunsGC:
    """Which runs to stop and which to collect now (see the module docstring)."""
    runs = [r for r in jobs.values() if r.parent]
    out = RunsGC()
    if not runs:
        return out
    names = {r.name for r in runs}
    tasks: dict[str, list[Assignment]] = {}
    for a in assignments.values():
        if a.job in names:
            tasks.setdefault(a.job, []).append(a)
    reports: dict[str, list[TaskStatus]] = {}
    for st in statuses.values():
        if st.job in names:
            reports.setdefault(st.job, []).append(st)
    up = {n.name for n in nodes.values() if n.up}

    finished: dict[str, list[tuple[JobRecord, float]]] = {}
    candidates: list[Collect] = []
    for r in sorted(runs, key=lambda r: r.name):
        assert r.parent is not None
        end = run_finished_at(r, tasks.get(r.name, ()), reports.get(r.name, ()), up)
        if r.parent not in jobs:
            if end is not None:
                candidates.append(Collect(r.name, r.parent, "its parent was removed", end))
            elif not r.stopped and len(out.stop) < policy.max_runs_per_pass:
                out.stop.append(r.name)
            continue
        if end is not None:
            finished.setdefault(r.parent, []).append((r, end))
    for parent, done in finished.items():
        done.sort(key=lambda x: (x[0].created, x[0].name), reverse=True)  # newest first
        for i, (r, end) in enumerate(done):
            if i >= policy.keep_runs:
                why = f"more than {policy.keep_runs} finished runs (keep {policy.keep_runs})"
            elif now - end >= policy.run_retention:
                why = (f"finished more than {format_duration(policy.run_retention)} ago "
                       "(retention)")
            else:
                continue
            candidates.append(Collect(r.name, parent, why, end))
    candidates.sort(key=lambda c: (c.finished, c.run))
    out.collect = candidates[:policy.max_runs_per_pass]
    return out


# --------------------------------------------------------------------------- keys


@dataclass(frozen=True)
class KeyRecord:
    """An idempotency key as stored at `path`: the run it made and when."""

    path: str
    job: str
    run: str | None
    created: float


def expired_keys(keys: Iterable[KeyRecord], jobs: Collection[str], now: float,
                 policy: GCPolicy) -> list[KeyRecord]:
    """Keys older than the TTL whose run no longer exists (`jobs`: the job names that
    do), oldest first, at most `max_keys_per_pass`."""
    out = [k for k in keys
           if now - k.created >= policy.key_ttl and (k.run is None or k.run not in jobs)]
    out.sort(key=lambda k: (k.created, k.path))
    return out[:policy.max_keys_per_pass]


# --------------------------------------------------------------------------- history


def orphan_histories(names: Iterable[str], jobs: Collection[str],
                     absent_since: dict[str, float], now: float,
                     policy: GCPolicy) -> list[str]:
    """Histories (`/history/<name>`) to delete: those of jobs that no longer exist and
    have been seen absent for `run_retention` (like Nomad's `job_gc_threshold`), so
    `helios job history` still answers for a while after `job rm`, and a history left
    behind by a leader that died mid-collection does not stay for ever.

    `absent_since` (name -> when this leader first saw it without a job) is updated in
    place; a new leader starts it afresh, which only delays collection."""
    present = set(names)
    for name in list(absent_since):
        if name not in present or name in jobs:
            del absent_since[name]
    due = []
    for name in sorted(present):
        if name in jobs:
            continue
        first = absent_since.setdefault(name, now)
        if now - first >= policy.run_retention:
            due.append(name)
    return due[:policy.max_runs_per_pass]


# --------------------------------------------------------------------------- nodes


def node_leftovers(name: str, *, node_children: Iterable[str] | None,
                   assignment_children: Iterable[str] | None,
                   status_children: Iterable[str] | None,
                   keep: Collection[str] = ()) -> list[str]:
    """Paths to delete when node `name` is removed, children before their parent: its
    record and everything under it, and its assignments and statuses except the task
    ids in `keep` (finished batch tasks whose slot they mark done: deleting them would
    run that slot again). A directory goes only when nothing in it is kept. `None`
    children: that path does not exist."""
    out: list[str] = []
    for d, children in ((paths.node(name), node_children),
                        (paths.assignments(name), assignment_children),
                        (paths.statuses(name), status_children)):
        if children is None:
            continue
        names = sorted(children)
        kept = d != paths.node(name) and any(c in keep for c in names)
        out.extend(f"{d}/{c}" for c in names if d == paths.node(name) or c not in keep)
        if not kept:
            out.append(d)
    return out


def stale_node_dirs(dirs: Iterable[str], known: Collection[str],
                    used: Collection[str]) -> list[str]:
    """`/assignments/<n>` and `/status/<n>` directories among `dirs` of nodes that are
    not `known` (no record) and that no cached assignment or status still uses."""
    out = []
    for d in dirs:
        top, _, rest = d.lstrip("/").partition("/")
        if top not in (paths.ASSIGNMENTS.strip("/"), paths.STATUS.strip("/")):
            continue
        if not rest or "/" in rest or rest in known or rest in used:
            continue
        out.append(d)
    return sorted(out)


def stale_service_dirs(dirs: Iterable[str], used: Collection[tuple[str, str]],
                       jobs: Collection[str]) -> list[str]:
    """Endpoint directories among `dirs` that nothing needs: `/services/<job>/<node>`
    when no assignment of `job` is on `node` (`used` holds the (job, node) pairs of the
    cached and the stored assignments), then `/services/<job>` when `job` is not in
    `jobs` and none of its node directories stays. Children come before their parent:
    the list is written in order, and a directory that still holds an endpoint (its
    node withdraws it before stopping the task) is refused by the store, not lost."""
    top = paths.SERVICES.strip("/")
    by_job: dict[str, list[str]] = {}
    job_dirs: set[str] = set()
    for d in dirs:
        parts = d.strip("/").split("/")
        if parts[0] != top:
            continue
        if len(parts) == 3:
            by_job.setdefault(parts[1], []).append(parts[2])
        elif len(parts) == 2:
            job_dirs.add(parts[1])
    out: list[str] = []
    for job in sorted(job_dirs | set(by_job)):
        nodes = by_job.get(job, [])
        gone = sorted(n for n in nodes if (job, n) not in used)
        out += [f"{paths.SERVICES}/{job}/{n}" for n in gone]
        if job in job_dirs and job not in jobs and len(gone) == len(nodes):
            out.append(f"{paths.SERVICES}/{job}")
    return out
