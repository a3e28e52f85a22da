"""Checkers of a chaos soak: pure functions of its history, Jepsen-style.

A soak (tests/chaos/soak.py) records one history: a list of plain dicts, each with `t`
(seconds since the soak began) and a `type`:

- `op`: an operation of the generator, Jepsen's invoke/complete pairs. `phase` is
  `invoke`, then `ok` (acknowledged), `fail` (definitely not applied) or `info`
  (indeterminate: a timeout or a lost connection; it may or may not have happened).
  `op` is `job_run` (`job`, `kind`, `count`, `value`: the service's served text, and on
  `ok` the `version` answered), `dispatch` (`job`, `key`, and on `ok` `run`, `created`)
  or `job_stop`.
- `fault`: the nemesis; `phase` `start` or `heal`, `kind` (see soak.FAULT_KINDS),
  `target`, and `fault` (its number, shared by its start and heal). A `drain` fault
  also records `drain-ok`/`drain-info` (the `node_drain` call), `leader-kill` (the
  leader killed while it drains), `drained` (the drain reported complete) or `stuck`
  (not complete within the soak's bound), and `enable-ok`/`enable-info`; its `heal` is
  the node enabled again.
- `obs`: what an observer saw while faults ran. `what` is `status` (`job`, `version`,
  `tasks`: `[{id, node, state, healthy}]`), `containers` (`running`:
  `[{id, task, job, node}]`, from the Docker daemon itself), `epoch` (`epoch`: the
  value of `/conductors/epoch`), `leader` (`name`, `epoch`: who claims to lead),
  `requests` (`job`, `ok`, `failed`: list of reasons), `converged` (`value`: bool).
- `final`: what was read once the faults stopped and the cluster settled: `status` and
  `containers` as above, `history` (`job`, `events`: `helios job history --json`),
  `served` (`job`, `bodies`: {served text: count} of requests after convergence).

Every checker takes the whole history and returns a list of `Violation`s (empty: the
invariant held). They never look at a cluster, so each is unit-tested on hand-written
histories that break it (tests/chaos/test_checkers.py), and a failed soak's history file
can be checked again later (`bench/chaos_soak.py --check FILE`).
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from itertools import pairwise
from typing import Any

Event = dict[str, Any]
History = list[Event]

#: task states that hold (or will hold) a container
ACTIVE = {"pending", "pulling", "starting", "healthchecking", "running"}


@dataclass(frozen=True)
class Violation:
    """One broken invariant: which checker, and what exactly it saw."""

    checker: str
    message: str

    def __str__(self) -> str:
        return f"{self.checker}: {self.message}"


def _of(history: History, type_: str, what: str | None = None) -> list[Event]:
    return [e for e in history if e.get("type") == type_
            and (what is None or e.get("what") == what)]


def _ops(history: History, op: str, phase: str | None = None) -> list[Event]:
    return [e for e in _of(history, "op") if e.get("op") == op
            and (phase is None or e.get("phase") == phase)]


def _final(history: History, what: str) -> list[Event]:
    return _of(history, "final", what)


def _final_status(history: History) -> dict[str, Event]:
    return {e["job"]: e for e in _final(history, "status")}


def _final_histories(history: History) -> dict[str, list[Event]]:
    return {e["job"]: e.get("events") or [] for e in _final(history, "history")}


def services(history: History) -> dict[str, int]:
    """Service jobs the generator asked for, with their count (last write wins)."""
    out: dict[str, int] = {}
    for e in _ops(history, "job_run", "invoke"):
        if e.get("kind") == "service":
            out[e["job"]] = int(e["count"])
    return out


# ------------------------------------------------------------------------- convergence

def check_convergence(history: History) -> list[Violation]:
    """Every service ends with exactly `count` tasks running and healthy, no other
    active task, at the newest version the cluster acknowledged."""
    out: list[Violation] = []
    finals = _final_status(history)
    acked = _acked_versions(history)
    for job, count in services(history).items():
        st = finals.get(job)
        if st is None:
            out.append(Violation("convergence", f"{job}: no final status (job lost?)"))
            continue
        tasks = st.get("tasks") or []
        live = [t for t in tasks if t.get("state") == "running" and t.get("healthy")
                is not False]
        other = [t for t in tasks if t.get("state") in ACTIVE and t not in live]
        if len(live) != count or other:
            out.append(Violation("convergence", f"{job}: {len(live)} running of {count}, "
                                 f"{len(other)} other active: {_brief(tasks)}"))
        if acked.get(job) and int(st.get("version") or 0) < max(acked[job]):
            out.append(Violation("convergence", f"{job}: final version {st.get('version')} "
                                 f"older than acknowledged {max(acked[job])}"))
    return out


def _brief(tasks: Iterable[Event]) -> str:
    return ", ".join(f"{t.get('id')}@{t.get('node')}:{t.get('state')}" for t in tasks)


# --------------------------------------------------- duplicates and orphans at the end

def check_final_containers(history: History) -> list[Violation]:
    """After convergence: each task runs in at most one container, every running
    container belongs to a task its job's status shows active on that container's node
    (no orphan), and each service runs exactly `count` containers."""
    out: list[Violation] = []
    finals = _final_status(history)
    owners: dict[tuple[str, str], str] = {}
    for job, st in finals.items():
        for t in st.get("tasks") or []:
            if t.get("state") in ACTIVE:
                owners[(job, t["id"])] = t.get("node") or ""
    for e in _final(history, "containers"):
        running = e.get("running") or []
        per_task = Counter(c["task"] for c in running)
        for task, n in per_task.items():
            if n > 1:
                out.append(Violation("duplicates", f"task {task} runs in {n} containers"))
        per_job = Counter(c["job"] for c in running)
        for job, count in services(history).items():
            if per_job.get(job, 0) != count:
                out.append(Violation("duplicates", f"{job}: {per_job.get(job, 0)} running "
                                     f"containers for count {count}"))
        for c in running:
            node = owners.get((c["job"], c["task"]))
            if node is None or node != c["node"]:
                out.append(Violation("orphans", f"container {c['id'][:12]} of task "
                                     f"{c['task']} on {c['node']} has no owner (status "
                                     f"shows it on {node or 'no node'})"))
    return out


# ------------------------------------------------------------------ one node per task

def check_task_single_node(history: History) -> list[Violation]:
    """A task id is one placement on one node: it never shows up on two nodes, neither in
    the conductor's status nor among the containers the Docker daemon runs, and never
    runs in two containers at once."""
    out: list[Violation] = []
    seen: dict[str, str] = {}
    reported: set[str] = set()
    for e in _of(history, "obs", "status") + _final(history, "status"):
        for t in e.get("tasks") or []:
            if not t.get("node"):
                continue
            first = seen.setdefault(t["id"], t["node"])
            if first != t["node"] and t["id"] not in reported:
                reported.add(t["id"])
                out.append(Violation("single-node", f"task {t['id']} reported on {first} "
                                     f"and on {t['node']} (t={e['t']:.1f})"))
    for e in _of(history, "obs", "containers") + _final(history, "containers"):
        nodes: dict[str, set[str]] = defaultdict(set)
        copies = Counter(c["task"] for c in e.get("running") or [])
        for c in e.get("running") or []:
            nodes[c["task"]].add(c["node"])
        for task, where in nodes.items():
            if (len(where) > 1 or copies[task] > 1) and task not in reported:
                reported.add(task)
                out.append(Violation("single-node", f"task {task} running in "
                                     f"{copies[task]} containers on {sorted(where)} at "
                                     f"t={e['t']:.1f}"))
    return out


# --------------------------------------------------------------------------- epochs

def check_epochs(history: History) -> list[Violation]:
    """The fencing epoch in the store never goes down, and no two conductors ever led
    under the same epoch."""
    out: list[Violation] = []
    last: tuple[float, int] | None = None
    for e in _of(history, "obs", "epoch"):
        ep = e.get("epoch")
        if ep is None:
            continue
        if last is not None and ep < last[1]:
            out.append(Violation("epoch", f"epoch went from {last[1]} (t={last[0]:.1f}) "
                                 f"down to {ep} (t={e['t']:.1f})"))
        last = (e["t"], ep)
    holders: dict[int, str] = {}
    for e in _of(history, "obs", "leader"):
        if e.get("epoch") is None or not e.get("name"):
            continue
        who = holders.setdefault(int(e["epoch"]), e["name"])
        if who != e["name"]:
            out.append(Violation("epoch", f"epoch {e['epoch']} led by both {who} and "
                                 f"{e['name']} (t={e['t']:.1f})"))
    return out


# ----------------------------------------------------------------------------- cron

def _tick(ev: Event) -> datetime:
    return datetime.fromisoformat(str(ev["tick"]).replace("Z", "+00:00"))


def cron_jobs(history: History) -> list[str]:
    return sorted({e["job"] for e in _ops(history, "job_run", "invoke")
                   if e.get("kind") == "cron"})


def _exited(events: list[Event]) -> bool:
    return any(e.get("state") == "exited" and e.get("exit_code", 0) == 0 for e in events)


def completed_runs(history: History) -> set[str]:
    """Runs seen `complete` while the soak went on (finished runs are garbage-collected
    with their history, so the final reads cannot show them all)."""
    return {name for e in _of(history, "obs", "jobs")
            for name, status in (e.get("jobs") or {}).items() if status == "complete"}


def _ran(run: str, hists: dict[str, list[Event]], done: set[str]) -> bool:
    return run in done or _exited(hists.get(run, []))


def check_cron(history: History) -> list[Violation]:
    """Every tick of a cron job is consumed exactly once: no tick twice, no run named
    twice, every tick between two consumed ones accounted for as `missed` (catch_up),
    and every fired run ran to completion."""
    out: list[Violation] = []
    hists = _final_histories(history)
    for job in cron_jobs(history):
        if job not in hists:
            out.append(Violation("cron", f"{job}: no final history"))
            continue
        consumed = cron_events(history, job)
        ticks = [_tick(e) for e in consumed]
        periods = [e["period"] for e in _ops(history, "job_run", "invoke")
                   if e["job"] == job and e.get("period")]
        step = float(periods[-1]) if periods else _step(ticks)
        for tick, n in Counter(ticks).items():
            if n > 1:
                out.append(Violation("cron", f"{job}: tick {tick:%H:%M:%S} consumed {n} "
                                     "times"))
        for prev, cur, ev in zip(ticks, ticks[1:], consumed[1:], strict=False):
            gap = round((cur - prev).total_seconds() / step)
            if cur != prev and gap - 1 != int(ev.get("missed") or 0):
                out.append(Violation("cron", f"{job}: {gap - 1} ticks between "
                                     f"{prev:%H:%M:%S} and {cur:%H:%M:%S} but the later "
                                     f"one says {ev.get('missed', 0)} missed"))
        runs: list[str] = [e.get("run") or "" for e in consumed
                           if e.get("state") == "cron fired"]
        for run, n in Counter(runs).items():
            if n > 1:
                out.append(Violation("cron", f"{job}: run {run} fired {n} times"))
        done = completed_runs(history)
        for run in sorted(set(runs)):
            if run and not _ran(run, hists, done):
                out.append(Violation("cron", f"{job}: fired run {run} never exited 0"))
    return out


def cron_events(history: History, job: str) -> list[Event]:
    """Every `cron fired` / `cron skipped` event of `job` seen, in tick order: the final
    read and the reads made while the soak went on, merged (a job keeps only its newest
    history batches, so no single read covers a long soak). The same event read twice
    counts once; two events for one tick stay two."""
    seen: dict[tuple[Any, ...], Event] = {}
    reads = [e for e in _of(history, "obs", "history") + _final(history, "history")
             if e.get("job") == job]
    for read in reads:
        for e in read.get("events") or []:
            if e.get("state") in ("cron fired", "cron skipped"):
                seen.setdefault((e.get("tick"), e["state"], e.get("run"), e.get("time")), e)
    return sorted(seen.values(), key=_tick)


def _step(ticks: list[datetime]) -> float:
    """The schedule's period: the smallest gap between consumed ticks (>= 1 s)."""
    gaps = [(b - a).total_seconds() for a, b in pairwise(ticks)
            if b > a]
    return max(1.0, min(gaps)) if gaps else 1.0


def cron_counts(history: History) -> dict[str, int]:
    """fired, skipped, missed (ticks with no leader, coalesced by catch_up) and double
    fires (ticks consumed more than once), over all cron jobs."""
    out = Counter[str]()
    for job in cron_jobs(history):
        consumed = cron_events(history, job)
        out["fired"] += sum(e["state"] == "cron fired" for e in consumed)
        out["skipped"] += sum(e["state"] == "cron skipped" for e in consumed)
        out["missed"] += sum(int(e.get("missed") or 0) for e in consumed)
        out["double"] += sum(n - 1 for n in Counter(e["tick"] for e in consumed).values())
    return dict(out)


# ------------------------------------------------------------------------- dispatch

def check_dispatch(history: History) -> list[Violation]:
    """A key always answers the same run, and creates it once; every acknowledged
    dispatch's run ran to completion (at least once)."""
    out: list[Violation] = []
    by_key: dict[tuple[str, str], set[str]] = defaultdict(set)
    created: Counter[tuple[str, str]] = Counter()
    runs: set[str] = set()
    for e in _ops(history, "dispatch", "ok"):
        runs.add(e["run"])
        if e.get("key"):
            k = (e["job"], e["key"])
            by_key[k].add(e["run"])
            created[k] += bool(e.get("created"))
    for (job, key), rs in sorted(by_key.items()):
        if len(rs) > 1:
            out.append(Violation("dispatch", f"{job} key {key}: {len(rs)} runs {sorted(rs)}"))
        if created[(job, key)] > 1:
            out.append(Violation("dispatch", f"{job} key {key}: created "
                                 f"{created[(job, key)]} times"))
    hists = _final_histories(history)
    done = completed_runs(history)
    for run in sorted(runs):
        if not _ran(run, hists, done):
            out.append(Violation("dispatch", f"run {run} never exited 0"))
    return out


# --------------------------------------------------------------- acknowledged writes

def _acked_versions(history: History) -> dict[str, list[int]]:
    out: dict[str, list[int]] = defaultdict(list)
    for e in _ops(history, "job_run", "ok"):
        if e.get("version") is not None:
            out[e["job"]].append(int(e["version"]))
    return out


def check_acked_writes(history: History) -> list[Violation]:
    """No acknowledged job change is lost: every acknowledged job still exists at the
    end; a batch job is complete; a service serves the newest acknowledged value, or
    one written after it whose outcome was unknown (an `info` op may have applied)."""
    out: list[Violation] = []
    finals = _final_status(history)
    served = {e["job"]: e.get("bodies") or {} for e in _final(history, "served")}
    writes: dict[str, list[Event]] = defaultdict(list)
    invokes = {e["id"]: e for e in _ops(history, "job_run", "invoke")}
    for e in _ops(history, "job_run"):
        if e["phase"] in ("ok", "info"):
            writes[e["job"]].append({**invokes.get(e["id"], {}), **e})
    for job, ws in writes.items():
        acked = [w for w in ws if w["phase"] == "ok"]
        if not acked:
            continue
        st = finals.get(job)
        if st is None:
            out.append(Violation("acked-writes", f"{job}: acknowledged but gone at the end"))
            continue
        kind = acked[-1].get("kind")
        if kind == "batch" and st.get("status") != "complete":
            out.append(Violation("acked-writes", f"batch {job}: status "
                                 f"{st.get('status')!r} at the end, not complete"))
        if kind == "service" and job in served:
            last = acked[-1]
            allowed = {last.get("value")} | {w.get("value") for w in ws
                                             if w["phase"] == "info" and w["t"] > last["t"]}
            wrong = {b: n for b, n in served[job].items() if b not in allowed}
            if wrong or not served[job]:
                out.append(Violation("acked-writes", f"{job}: serves {served[job]} after "
                                     f"convergence; acknowledged {last.get('value')!r}"))
    return out


#: a status or container observation returned this long after a drain completed was
#: surely asked after it (the observer's calls time out in 3 s)
DRAIN_OBS_MARGIN = 3.5


def drain_windows(history: History) -> list[tuple[int, str, float, float | None, bool]]:
    """Per drain fault: (fault, node, start, drained at or None, stuck)."""
    faults = [e for e in _of(history, "fault") if e.get("kind") == "drain"]
    drained: dict[int, float] = {}
    stuck: set[int] = set()
    for e in faults:
        if e.get("phase") == "drained":
            drained.setdefault(e["fault"], e["t"])
        elif e.get("phase") == "stuck":
            stuck.add(e["fault"])
    return [(e["fault"], e["target"], e["t"], drained.get(e["fault"]), e["fault"] in stuck)
            for e in faults if e.get("phase") == "start"]


def fault_intervals(history: History) -> dict[int, tuple[str, float, float]]:
    """Per fault number: (kind, start, heal), the heal being the end of the history when
    the fault was never healed."""
    end = history[-1]["t"] if history else 0.0
    out: dict[int, tuple[str, float, float]] = {}
    faults = _of(history, "fault")
    heals: dict[int, float] = {e["fault"]: e["t"] for e in faults
                               if e.get("phase") == "heal"}
    for e in faults:
        if e.get("phase") == "start":
            out[e["fault"]] = (e["kind"], e["t"], heals.get(e["fault"], end))
    return out


def check_drains(history: History) -> list[Violation]:
    """A drain completes (within the soak's bound, under the other faults), and from its
    completion until the node is enabled again no service task is active there and no
    container of a service runs there."""
    out = []
    svc = set(services(history))
    spans = fault_intervals(history)
    for fault, node, _, drained, stuck in drain_windows(history):
        if stuck:
            out.append(Violation("drain", f"fault {fault}: the drain of {node} did not "
                                          "complete"))
        if drained is None:
            continue
        lo, hi = drained + DRAIN_OBS_MARGIN, spans[fault][2]
        for e in _of(history, "obs", "status"):
            if e.get("job") not in svc or not lo < e["t"] < hi:
                continue
            there = [t for t in e.get("tasks") or [] if t.get("node") == node
                     and t.get("state") in ACTIVE]
            if there:
                out.append(Violation("drain", f"t={e['t']:.1f}: {e['job']} has "
                                              f"{_brief(there)} on drained {node}"))
        for e in _of(history, "obs", "containers"):
            if not lo < e["t"] < hi:
                continue
            there = [c for c in e.get("running") or [] if c.get("node") == node
                     and c.get("job") in svc]
            if there:
                out.append(Violation("drain", f"t={e['t']:.1f}: containers of "
                                              f"{sorted({c['job'] for c in there})} run on "
                                              f"drained {node}"))
    return out


def _within(spans: Iterable[tuple[float, float]], t: float) -> bool:
    return any(lo <= t <= hi for lo, hi in spans)


# ------------------------------------------------------------------------- figures

CHECKERS: dict[str, Callable[[History], list[Violation]]] = {
    "convergence": check_convergence,
    "final-containers": check_final_containers,
    "single-node": check_task_single_node,
    "epochs": check_epochs,
    "cron": check_cron,
    "dispatch": check_dispatch,
    "acked-writes": check_acked_writes,
    "drain": check_drains,
}

#: the checkers that need no `final` entries, run while the soak goes on
CONTINUOUS = ("single-node", "epochs", "drain")


def check_all(history: History, only: Iterable[str] | None = None) -> list[Violation]:
    names = list(only) if only is not None else list(CHECKERS)
    return [v for name in names for v in CHECKERS[name](history)]


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, round(p / 100 * len(s) + 0.5) - 1))
    return s[k]


def recovery_times(history: History) -> dict[str, list[float]]:
    """Per fault kind: seconds from each fault's start to the first `converged`
    observation after its heal (a fault whose cluster never converged again counts
    until the end of the history)."""
    conv = [e["t"] for e in _of(history, "obs", "converged") if e.get("value")]
    heals = {e["fault"]: e["t"] for e in _of(history, "fault") if e.get("phase") == "heal"}
    end = history[-1]["t"] if history else 0.0
    out: dict[str, list[float]] = defaultdict(list)
    for e in _of(history, "fault"):
        if e.get("phase") != "start":
            continue
        healed = heals.get(e["fault"], e["t"])
        after = [t for t in conv if t >= healed]
        out[e["kind"]].append((after[0] if after else end) - e["t"])
    return dict(out)


def figures(history: History) -> dict[str, Any]:
    """The numbers a soak prints at its end."""
    faults = Counter(e["kind"] for e in _of(history, "fault") if e.get("phase") == "start")
    rec = {k: {"p50": statistics.median(v), "p99": percentile(v, 99), "n": len(v)}
           for k, v in recovery_times(history).items()}
    ok: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    for e in _of(history, "obs", "requests"):
        ok[e["job"]] += int(e.get("ok") or 0)
        failed[e["job"]] += len(e.get("failed") or [])
    violations = check_all(history)
    by = Counter(v.checker for v in violations)
    cron = cron_counts(history)
    svc = set(services(history))
    windows = drain_windows(history)
    spans = fault_intervals(history)
    return {
        "faults": dict(faults),
        "recovery": rec,
        "requests": {j: {"ok": ok[j], "failed": failed[j]} for j in sorted(set(ok) | set(failed))},
        "lost_tasks": by["convergence"] + sum(1 for v in violations if "never exited" in
                                              v.message),
        "duplicates_after_convergence": by["duplicates"] + by["orphans"],
        "double_cron_fires": cron.get("double", 0),
        "lost_acknowledged_writes": by["acked-writes"],
        "cron": cron,
        "dispatches": len(_ops(history, "dispatch", "ok")),
        "job_changes_acknowledged": len(_ops(history, "job_run", "ok")),
        "rolls_during_faults": sum(
            1 for e in _ops(history, "job_run", "invoke") if e.get("job") in svc
            and not str(e.get("value")).endswith("-v1")
            and _within([(a, b) for _, a, b in spans.values()], e["t"])),
        "drains": {"started": len(windows),
                   "drained": sum(1 for w in windows if w[3] is not None),
                   "seconds": sorted(round(w[3] - w[2], 1) for w in windows
                                     if w[3] is not None),
                   "leader_kills": sum(1 for e in _of(history, "fault")
                                       if e.get("kind") == "drain"
                                       and e.get("phase") == "leader-kill"),
                   "failed_requests_during": sum(
                       len(e.get("failed") or []) for e in _of(history, "obs", "requests")
                       if _within([spans[w[0]][1:] for w in windows], e["t"]))},
        "violations": [str(v) for v in violations],
    }
