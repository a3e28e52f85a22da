"""Validating a job file: raw data (from YAML, JSON or the store) to the fields of a
`JobSpec` (`check_job`), or a `SpecError` naming *every* problem with its field path
(``resources.memory: "64Q" is not a size``), never only the first: people fix a file in
one pass that way. Unknown fields are errors too, because a misspelt optional field
(``restrat:``) silently ignored is a production incident; a close known name is
suggested. The reference of every key is docs/job-file.md.
"""

from __future__ import annotations

import difflib
import re
import shlex
from collections.abc import Mapping
from typing import Any

from helios.cron import CronError, parse_cron
from helios.secrets.refs import check_ref, is_ref
from helios.spec.errors import Problem, SpecError
from helios.spec.parts import (
    BATCH_RESCHEDULE,
    KINDS,
    LOG_DRIVERS,
    MAX_NAME,
    MIN_MEMORY,
    RESTART_POLICIES,
    FrozenMap,
    HealthCheck,
    LogConfig,
    Port,
    RegistryAuth,
    ReschedulePolicy,
    Resources,
    RestartPolicy,
    UpdatePolicy,
)
from helios.units import UnitError, parse_duration, parse_size

__all__ = ["check_job", "join_path", "typename"]

_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
_PORT_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9_-]*[a-z0-9])?$")
_USER_RE = re.compile(r"[a-z_][a-z0-9_.-]{0,31}(:[a-z_][a-z0-9_.-]{0,31})?"
                      r"|[0-9]{1,10}(:[0-9]{1,10})?")
_ENV_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def typename(v: object) -> str:
    """What a raw value is, as a person says it (`a mapping`, `a number`)."""
    if v is None:
        return "nothing"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean",
            int: "a number", float: "a number"}.get(type(v), type(v).__name__)


class _Checker:
    """Collects problems while walking the raw data; every check reports and goes on."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def err(self, path: str, reason: str) -> None:
        self.problems.append(Problem(path, reason))

    def mapping(self, raw: Any, path: str, allowed: tuple[str, ...] | None) -> dict | None:
        if not isinstance(raw, Mapping):
            self.err(path, f"must be a mapping, got {typename(raw)}")
            return None
        out = {}
        for k, v in raw.items():
            if not isinstance(k, str):
                self.err(path, f"field name {k!r} must be a string")
                continue
            if allowed is not None and k not in allowed:
                hint = difflib.get_close_matches(k, allowed, n=1, cutoff=0.6)
                extra = f" (did you mean '{hint[0]}'?)" if hint else \
                    f" (known: {', '.join(allowed)})"
                self.err(join_path(path, k), f"unknown field{extra}")
                continue
            out[k] = v
        return out

    def string(self, v: Any, path: str, *, nonempty: bool = True) -> str | None:
        if not isinstance(v, str):
            self.err(path, f"must be a string, got {typename(v)}")
            return None
        if nonempty and not v.strip():
            self.err(path, "must not be empty")
            return None
        return v

    def scalar_str(self, v: Any, path: str) -> str | None:
        """Env values and labels: YAML turns `true`/`8080` into non-strings; accept them."""
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float | str):
            return str(v)
        self.err(path, f"must be a string, number or boolean, got {typename(v)}")
        return None

    def integer(self, v: Any, path: str, lo: int, hi: int | None = None) -> int | None:
        if isinstance(v, bool) or not isinstance(v, int):
            self.err(path, f"must be a whole number, got {typename(v)} {v!r}")
            return None
        if v < lo or (hi is not None and v > hi):
            rng = f"{lo}-{hi}" if hi is not None else f">= {lo}"
            self.err(path, f"{v} is out of range ({rng})")
            return None
        return v

    def boolean(self, v: Any, path: str) -> bool | None:
        if not isinstance(v, bool):
            self.err(path, f"must be true or false, got {typename(v)} {v!r}")
            return None
        return v

    def choice(self, v: Any, path: str, options: tuple[str, ...]) -> str | None:
        if v not in options:
            hint = difflib.get_close_matches(str(v), options, n=1, cutoff=0.5)
            extra = f" (did you mean '{hint[0]}'?)" if hint else ""
            self.err(path, f"{v!r} is not one of {', '.join(options)}{extra}")
            return None
        return v

    def duration(self, v: Any, path: str, *, positive: bool = False) -> float | None:
        try:
            d = parse_duration(v)
        except UnitError as e:
            self.err(path, str(e))
            return None
        if positive and d <= 0:
            self.err(path, "must be longer than 0s")
            return None
        return d

    def argv(self, v: Any, path: str) -> tuple[str, ...] | None:
        """A command: a list of strings, or one string split like a shell would."""
        if isinstance(v, str):
            try:
                parts = shlex.split(v)
            except ValueError as e:
                self.err(path, f"cannot split {v!r}: {e}")
                return None
            if not parts:
                self.err(path, "must not be empty")
                return None
            return tuple(parts)
        if not isinstance(v, list) or not v:
            self.err(path, f"must be a non-empty list of strings, got {typename(v)}")
            return None
        ok = True
        out = []
        for i, a in enumerate(v):
            if isinstance(a, bool) or not isinstance(a, str | int | float):
                self.err(f"{path}[{i}]", f"must be a string, got {typename(a)}")
                ok = False
            else:
                out.append(str(a))
        return tuple(out) if ok else None

    def str_map(self, v: Any, path: str, key_re: re.Pattern[str] | None,
                key_rule: str = "") -> FrozenMap:
        m = self.mapping(v, path, None)
        out: dict[str, str] = {}
        for k, val in (m or {}).items():
            if key_re is not None and not key_re.fullmatch(k):
                self.err(join_path(path, k), f"invalid name: {key_rule}")
                continue
            s = self.scalar_str(val, join_path(path, k))
            if s is not None:
                out[k] = s
        return FrozenMap(out)


def join_path(path: str, key: str) -> str:
    """The dotted field path of `key` under `path` (`resources` + `memory`)."""
    return f"{path}.{key}" if path else key


_TOP = ("name", "kind", "image", "command", "env", "count", "resources", "ports",
        "constraints", "spread", "health", "restart", "update", "grace", "schedule",
        "timezone", "overlap", "catch_up", "payload", "log", "registry_auth", "user",
        "reschedule")


def check_job(data: Mapping[str, Any], *, max_name: int = MAX_NAME) -> dict[str, Any]:
    """The fields of a `JobSpec` (keyword arguments, defaults left to the class where
    nothing depends on the kind) from raw job-file data, or SpecError naming every
    problem. `helios.spec.validate` and `JobSpec.from_dict` build the spec from them."""
    c = _Checker()
    raw = c.mapping(data, "", _TOP)
    if raw is None:
        raise SpecError(c.problems)
    spec: dict[str, Any] = {}

    if "name" not in raw:
        c.err("name", "is required")
    elif (name := c.string(raw["name"], "name")) is not None:
        if len(name) > max_name or not _NAME_RE.fullmatch(name):
            c.err("name", f"{name!r} must be 1-{max_name} characters of a-z, 0-9 and '-', "
                          "starting and ending with a letter or digit")
        else:
            spec["name"] = name

    kind = "service"
    if "kind" in raw:
        kind = c.choice(raw["kind"], "kind", KINDS) or "service"
    spec["kind"] = kind

    if "image" in raw and (image := c.string(raw["image"], "image")) is not None:
        if any(ch.isspace() for ch in image):
            c.err("image", f"{image!r} must not contain spaces")
        else:
            spec["image"] = image
    if "command" in raw and (cmd := c.argv(raw["command"], "command")) is not None:
        spec["command"] = cmd
    if "user" in raw and (user := c.string(raw["user"], "user")) is not None:
        if not _USER_RE.fullmatch(user):
            c.err("user", f"{user[:64]!r} must be a user name or uid, optionally with "
                          ":group or :gid (as Docker's --user)")
        else:
            spec["user"] = user
    if "image" not in raw and "command" not in raw:
        c.err("image", "is required (or give a command, for the process runtime)")

    if "env" in raw:
        spec["env"] = _env(c, raw["env"])
    if "count" in raw and (n := c.integer(raw["count"], "count", 0, 100_000)) is not None:
        spec["count"] = n
    if "resources" in raw:
        spec["resources"] = _resources(c, raw["resources"])
    if "ports" in raw:
        spec["ports"] = _ports(c, raw["ports"])
    if "constraints" in raw:
        spec["constraints"] = c.str_map(raw["constraints"], "constraints", None)
    if "spread" in raw and (b := c.boolean(raw["spread"], "spread")) is not None:
        spec["spread"] = b
    if "health" in raw:
        spec["health"] = _health(c, raw["health"], spec.get("ports", {}))
    spec["restart"] = _restart(c, raw.get("restart", {}), kind)
    if "update" in raw:
        spec["update"] = _update(c, raw["update"])
    if "grace" in raw and (g := c.duration(raw["grace"], "grace")) is not None:
        spec["grace"] = g
    if "log" in raw:
        spec["log"] = _log(c, raw["log"])
    if kind in ("service", "batch"):
        spec["reschedule"] = _reschedule(c, raw.get("reschedule", {}), kind)
    elif "reschedule" in raw:
        c.err("reschedule", f"does not apply to kind {kind} (its runs are batch jobs with "
                            "the batch defaults)")
    if "registry_auth" in raw:
        spec["registry_auth"] = _registry_auth(c, raw["registry_auth"])
    _kind_fields(c, raw, kind, spec)

    if c.problems:
        raise SpecError(c.problems)
    return spec


def _resources(c: _Checker, v: Any) -> Resources:
    m = c.mapping(v, "resources", ("cpus", "memory")) or {}
    cpus, memory = Resources.cpus, Resources.memory
    if "cpus" in m:
        x = m["cpus"]
        if isinstance(x, bool) or not isinstance(x, int | float):
            c.err("resources.cpus", f"must be a number of cpus (e.g. 0.25), got {typename(x)}")
        elif not 0 < x <= 1024:
            c.err("resources.cpus", f"{x} must be more than 0 (and at most 1024)")
        else:
            cpus = round(float(x), 3)
    if "memory" in m:
        try:
            memory = parse_size(m["memory"])
        except UnitError as e:
            c.err("resources.memory", str(e))
        else:
            if memory < MIN_MEMORY:
                c.err("resources.memory", f"{m['memory']!r} is below the 6 MiB Docker allows")
    return Resources(cpus=cpus, memory=memory)


def _ports(c: _Checker, v: Any) -> FrozenMap:
    m = c.mapping(v, "ports", None) or {}
    out: dict[str, Port] = {}
    hosts: dict[int, str] = {}
    for name, pv in m.items():
        path = f"ports.{name}"
        if not _PORT_NAME_RE.fullmatch(name):
            c.err(path, "invalid port name: use a-z, 0-9, '-' and '_'")
            continue
        if isinstance(pv, int) and not isinstance(pv, bool):
            pv = {"container": pv}
        pm = c.mapping(pv, path, ("container", "host"))
        if pm is None:
            continue
        if "container" not in pm:
            c.err(f"{path}.container", "is required")
            continue
        container = c.integer(pm["container"], f"{path}.container", 1, 65535)
        host = None
        if pm.get("host") is not None:
            host = c.integer(pm["host"], f"{path}.host", 1, 65535)
            if host is not None and host in hosts:
                c.err(f"{path}.host", f"host port {host} is also used by port '{hosts[host]}'")
            elif host is not None:
                hosts[host] = name
        if container is not None:
            out[name] = Port(container=container, host=host)
    return FrozenMap(out)


def _health(c: _Checker, v: Any, ports: Mapping[str, Port]) -> HealthCheck | None:
    allowed = ("http", "tcp", "exec", "interval", "timeout", "start_grace", "failures")
    m = c.mapping(v, "health", allowed)
    if m is None:
        return None
    kinds = [k for k in ("http", "tcp", "exec") if k in m]
    if len(kinds) != 1:
        c.err("health", "needs exactly one of http, tcp or exec"
              + (f" (got {', '.join(kinds)})" if kinds else ""))
        return None
    kind = kinds[0]
    hc: dict[str, Any] = {"type": kind}
    if kind == "exec":
        cmd = c.argv(m["exec"], "health.exec")
        if cmd is not None:
            hc["command"] = cmd
    else:
        keys = ("port", "path") if kind == "http" else ("port",)
        sub = c.mapping(m[kind], f"health.{kind}", keys) or {}
        path = f"health.{kind}.port"
        port = sub.get("port")
        if port is None:
            c.err(path, "is required (a name from ports, or a container port number)")
        elif isinstance(port, str):
            if port not in ports:
                known = ", ".join(ports) or "none declared"
                c.err(path, f"'{port}' is not a declared port (ports: {known})")
            else:
                hc["port"] = port
        elif (n := c.integer(port, path, 1, 65535)) is not None:
            hc["port"] = n
        if kind == "http" and "path" in sub:
            p = c.string(sub["path"], f"health.{kind}.path")
            if p is not None and not p.startswith("/"):
                c.err(f"health.{kind}.path", f"{p!r} must start with '/'")
            elif p is not None and (len(p) > 2048 or any(ch <= " " or ch == "\x7f"
                                                         for ch in p)):
                c.err(f"health.{kind}.path", f"{p[:100]!r} must be at most 2048 characters "
                                             "with no spaces or control characters")
            elif p is not None:
                hc["path"] = p
    for key in ("interval", "timeout"):
        if key in m and (d := c.duration(m[key], f"health.{key}", positive=True)) is not None:
            hc[key] = d
    if "start_grace" in m and (d := c.duration(m["start_grace"], "health.start_grace")) \
            is not None:
        hc["start_grace"] = d
    if "failures" in m and (n := c.integer(m["failures"], "health.failures", 1, 100)) \
            is not None:
        hc["failures"] = n
    return HealthCheck(**hc)


def _restart(c: _Checker, v: Any, kind: str) -> RestartPolicy:
    m = c.mapping(v, "restart", ("policy", "max", "backoff")) or {}
    policy = "always" if kind == "service" else "on-failure"
    if "policy" in m:
        policy = c.choice(m["policy"], "restart.policy", RESTART_POLICIES) or policy
    default_max = {"always": None, "on-failure": 3, "never": 0}[policy]
    mx: int | None = default_max
    if m.get("max") is not None:
        mx = c.integer(m["max"], "restart.max", 0)
    backoff = 1.0
    if "backoff" in m and (d := c.duration(m["backoff"], "restart.backoff")) is not None:
        backoff = d
    if policy == "never":
        mx = 0
    return RestartPolicy(policy=policy, max=mx, backoff=backoff)


def _update(c: _Checker, v: Any) -> UpdatePolicy:
    m = c.mapping(v, "update", ("parallel", "deadline", "auto_rollback",
                                "min_healthy_time")) or {}
    u: dict[str, Any] = {}
    if "parallel" in m and (n := c.integer(m["parallel"], "update.parallel", 1)) is not None:
        u["parallel"] = n
    if "deadline" in m and (d := c.duration(m["deadline"], "update.deadline", positive=True)) \
            is not None:
        u["deadline"] = d
    if "auto_rollback" in m and (b := c.boolean(m["auto_rollback"], "update.auto_rollback")) \
            is not None:
        u["auto_rollback"] = b
    if "min_healthy_time" in m and (
            d := c.duration(m["min_healthy_time"], "update.min_healthy_time")) is not None:
        u["min_healthy_time"] = d
    return UpdatePolicy(**u)


def _reschedule(c: _Checker, v: Any, kind: str) -> ReschedulePolicy:
    """Nomad's defaults. Services: 30s, doubling, at most 1h apart, unlimited attempts.
    Batch: once within 24h, after 5s (constant: `max_delay` defaults to `delay`)."""
    m = c.mapping(v, "reschedule", ("delay", "max_delay", "attempts", "interval")) or {}
    r: dict[str, Any] = {}
    if kind == "batch":
        r = BATCH_RESCHEDULE.to_dict() | {"max_delay": None}
    for key, positive in (("delay", True), ("max_delay", True), ("interval", False)):
        if m.get(key) is not None and (
                d := c.duration(m[key], f"reschedule.{key}", positive=positive)) is not None:
            r[key] = d
    if m.get("attempts") not in (None, "unlimited") and (
            n := c.integer(m["attempts"], "reschedule.attempts", 0)) is not None:
        r["attempts"] = n
    if kind == "batch" and m.get("max_delay") is None:
        r["max_delay"] = r["delay"]
    if m.get("attempts") == "unlimited":
        r["attempts"] = None
    if r.get("max_delay", 3600.0) < r.get("delay", 30.0):
        c.err("reschedule.max_delay", "must not be shorter than reschedule.delay")
    if r.get("attempts") is not None and not r.get("interval"):
        c.err("reschedule.interval", "is required with reschedule.attempts (the window "
                                     "the attempts are counted in)")
    return ReschedulePolicy(**r)


def _log(c: _Checker, v: Any) -> LogConfig:
    m = c.mapping(v, "log", ("driver", "options")) or {}
    driver = "json-file"
    if "driver" in m:
        driver = c.choice(m["driver"], "log.driver", LOG_DRIVERS) or driver
    options = c.str_map(m["options"], "log.options", None) if "options" in m else FrozenMap()
    return LogConfig(driver=driver, options=options)


def _env(c: _Checker, v: Any) -> FrozenMap:
    """`env`: string values, or `{secret: NAME}` references (helios.secrets.refs)."""
    rule = "letters, digits and '_', not starting with a digit"
    refs = {k: val for k, val in v.items() if is_ref(val)} if isinstance(v, dict) else {}
    out = dict(c.str_map({k: val for k, val in v.items() if k not in refs}
                         if refs else v, "env", _ENV_RE, rule))
    for k, val in refs.items():
        if not _ENV_RE.fullmatch(k):
            c.err(join_path("env", k), f"invalid name: {rule}")
        elif (ref := check_ref(c, val, join_path("env", k))) is not None:
            out[k] = ref
    return FrozenMap(out)


def _registry_auth(c: _Checker, v: Any) -> RegistryAuth | None:
    if is_ref(v):
        ref = check_ref(c, v, "registry_auth", extra=("server",))
        server = v.get("server")
        if server is not None and c.string(server, "registry_auth.server") is None:
            return None
        return RegistryAuth(server=server, secret=ref) if ref is not None else None
    m = c.mapping(v, "registry_auth", ("username", "password", "server"))
    if m is None:
        return None
    vals: dict[str, Any] = {}
    for key in ("username", "password"):
        if key not in m:
            c.err(f"registry_auth.{key}", "is required")
        elif (s := c.string(m[key], f"registry_auth.{key}")) is not None:
            vals[key] = s
    if "server" in m and (s := c.string(m["server"], "registry_auth.server")) is not None:
        vals["server"] = s
    if len(vals) < 2 or "username" not in vals or "password" not in vals:
        return None
    return RegistryAuth(**vals)


def _kind_fields(c: _Checker, raw: dict, kind: str, spec: dict[str, Any]) -> None:
    """Fields that belong to one kind: refused elsewhere, defaulted there."""
    cron_only = ("schedule", "timezone", "overlap", "catch_up")
    if kind != "cron":
        for key in cron_only:
            if key in raw:
                c.err(key, f"only applies to kind cron (this job is {kind})")
    if kind != "parameterized" and "payload" in raw:
        c.err("payload", f"only applies to kind parameterized (this job is {kind})")
    if kind == "cron":
        tz = "UTC"
        if "timezone" in raw and (t := c.string(raw["timezone"], "timezone")) is not None:
            try:
                parse_cron("* * * * *", t)
            except CronError as e:
                c.err("timezone", str(e))
            else:
                tz = t
        spec["timezone"] = tz
        if "schedule" not in raw:
            c.err("schedule", "is required for kind cron (e.g. \"*/5 * * * *\")")
        elif (s := c.string(raw["schedule"], "schedule")) is not None:
            try:
                parse_cron(s, tz)
            except CronError as e:
                c.err("schedule", str(e))
            else:
                spec["schedule"] = s
        spec["overlap"] = c.choice(raw.get("overlap", "skip"), "overlap",
                                   ("skip", "allow")) or "skip"
        spec["catch_up"] = c.choice(raw.get("catch_up", "one"), "catch_up",
                                    ("one", "none")) or "one"
    if kind == "parameterized":
        spec["payload"] = c.choice(raw.get("payload", "optional"), "payload",
                                   ("required", "optional", "forbidden")) or "optional"
