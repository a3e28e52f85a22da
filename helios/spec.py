"""The job file: its model, its defaults and its validation (examples/jobs/README.md).

A job file is refused *before anything changes* when anything in it is wrong, and the
refusal names every problem with its field path (``resources.memory: "64Q" is not a
size``), never only the first: people fix a file in one pass that way. Unknown fields are
errors too, because a misspelt optional field (``restrat:``) silently ignored is a
production incident; a close known name is suggested.

A validated :class:`JobSpec` is immutable and normalised (sizes in bytes, durations in
seconds, defaults filled in), so two files that mean the same thing compare equal, and
``to_dict``/``from_dict`` round-trip it through ZooKeeper. :meth:`JobSpec.fingerprint`
hashes only what a running container was built from; the reconciler compares it to decide
whether a change needs new tasks (a new image) or none (a new ``count``).
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import re
import shlex
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from helios.cron import CronError, parse_cron
from helios.secrets.refs import SecretRef, check_ref, is_ref, plain
from helios.units import UnitError, format_duration, parse_duration, parse_size

__all__ = [
    "KINDS",
    "PAYLOAD_ENV",
    "FrozenMap",
    "HealthCheck",
    "JobSpec",
    "LogConfig",
    "Port",
    "Problem",
    "RegistryAuth",
    "ReschedulePolicy",
    "Resources",
    "RestartPolicy",
    "SpecError",
    "UpdatePolicy",
    "load_file",
    "loads",
    "run_spec",
    "validate",
]

KINDS = ("service", "batch", "cron", "parameterized")
RESTART_POLICIES = ("always", "on-failure", "never")
LOG_DRIVERS = ("json-file", "local", "none", "syslog", "journald", "gelf", "fluentd",
               "awslogs", "splunk", "gcplogs", "logentries", "etwlogs")
MIB = 1024 * 1024
MIN_MEMORY = 6 * MIB  # Docker refuses a smaller memory limit; say so at submit time

_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
_PORT_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9_-]*[a-z0-9])?$")
_USER_RE = re.compile(r"[a-z_][a-z0-9_.-]{0,31}(:[a-z_][a-z0-9_.-]{0,31})?"
                      r"|[0-9]{1,10}(:[0-9]{1,10})?")
_ENV_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# --------------------------------------------------------------------------- errors


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a job file: where (dotted field path) and why."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}" if self.path else self.reason


class SpecError(ValueError):
    """A job file that does not validate; ``problems`` lists every problem found."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        n = len(self.problems)
        head = f"job file is invalid ({n} problem{'s' if n != 1 else ''})"
        super().__init__(head + ":\n" + "\n".join(f"  {p}" for p in self.problems))

    def __str__(self) -> str:
        return self.args[0]


# --------------------------------------------------------------------------- model


class FrozenMap(Mapping[str, Any]):
    """An immutable, hashable mapping with sorted keys, so a JobSpec can be frozen, hashed
    and compared regardless of the order fields were written in."""

    __slots__ = ("_d", "_h")

    def __init__(self, items: Mapping[str, Any] | None = None):
        self._d: dict[str, Any] = dict(sorted((items or {}).items(), key=lambda kv: kv[0]))
        self._h: int | None = None

    def __getitem__(self, key: str) -> Any:
        return self._d[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._d)

    def __len__(self) -> int:
        return len(self._d)

    def __hash__(self) -> int:
        if self._h is None:
            self._h = hash(tuple(self._d.items()))
        return self._h

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return self._d == dict(other)
        return NotImplemented

    def __repr__(self) -> str:
        return f"FrozenMap({self._d!r})"

    def to_dict(self) -> dict[str, Any]:
        return dict(self._d)


@dataclass(frozen=True)
class Resources:
    """What one task reserves on its node; the scheduler packs by these."""

    cpus: float = 0.1
    memory: int = 64 * MIB

    def to_dict(self) -> dict[str, Any]:
        return {"cpus": self.cpus, "memory": self.memory}


@dataclass(frozen=True)
class Port:
    """A container port; ``host`` is fixed when given, else the node picks one."""

    container: int
    host: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"container": self.container} | ({"host": self.host} if self.host else {})


@dataclass(frozen=True)
class HealthCheck:
    """How the node decides a task is healthy (gates rollouts and endpoints).

    ``type`` is http, tcp or exec; ``port`` names an entry of ``ports`` (or is a container
    port number); ``start_grace`` is how long after start failures do not count, and
    ``failures`` how many consecutive failures make a healthy task unhealthy.
    """

    type: str
    port: str | int | None = None
    path: str = "/"
    command: tuple[str, ...] = ()
    interval: float = 10.0
    timeout: float = 2.0
    start_grace: float = 5.0
    failures: int = 3

    def to_dict(self) -> dict[str, Any]:
        if self.type == "http":
            check: dict[str, Any] = {"http": {"port": self.port, "path": self.path}}
        elif self.type == "tcp":
            check = {"tcp": {"port": self.port}}
        else:
            check = {"exec": list(self.command)}
        return check | {"interval": self.interval, "timeout": self.timeout,
                        "start_grace": self.start_grace, "failures": self.failures}


@dataclass(frozen=True)
class RestartPolicy:
    """What the node does when a container exits: policy, attempts (None = unlimited), and
    the base of the exponential backoff between attempts."""

    policy: str = "always"
    max: int | None = None
    backoff: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return {"policy": self.policy, "max": self.max, "backoff": self.backoff}


@dataclass(frozen=True)
class UpdatePolicy:
    """Rolling update: tasks replaced at once, time for a new task to become healthy, and
    whether a failed rollout goes back to the previous version by itself."""

    parallel: int = 1
    deadline: float = 300.0
    auto_rollback: bool = True
    # A task of a service without a health check counts as healthy once it has run this
    # long (Nomad's min_healthy_time): one that exits at once must not pass for healthy.
    min_healthy_time: float = 10.0

    def to_dict(self) -> dict[str, Any]:
        return {"parallel": self.parallel, "deadline": self.deadline,
                "auto_rollback": self.auto_rollback,
                "min_healthy_time": self.min_healthy_time}


@dataclass(frozen=True)
class ReschedulePolicy:
    """When the conductor places a service slot again after its task failed for good (a
    pull that failed, a crash loop past ``restart.max``, a lost node), as Nomad's
    ``reschedule`` block: the first wait is ``delay``, doubled for each failure of the
    slot in a row before it, capped at ``max_delay``. ``attempts`` (None = unlimited)
    bounds the reschedules within ``interval``; past it the slot stays empty until the
    oldest attempt leaves the interval. Why: a failure that recurs at once (a missing
    image) must not become a loop that burns a node and floods the history."""

    delay: float = 30.0
    max_delay: float = 3600.0
    attempts: int | None = None
    interval: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"delay": self.delay, "max_delay": self.max_delay,
                "attempts": "unlimited" if self.attempts is None else self.attempts,
                "interval": self.interval}


#: Nomad's batch default: rescheduled once within 24h, 5s after the failure
BATCH_RESCHEDULE = ReschedulePolicy(delay=5.0, max_delay=5.0, attempts=1, interval=86400.0)


@dataclass(frozen=True)
class LogConfig:
    """Docker log driver and its options, passed through so logs go where operators route
    Docker logs already."""

    driver: str = "json-file"
    options: FrozenMap = field(default_factory=FrozenMap)

    def to_dict(self) -> dict[str, Any]:
        return {"driver": self.driver, "options": self.options.to_dict()}


@dataclass(frozen=True)
class RegistryAuth:
    """Credentials for pulling from a private registry (kept out of repr and logs):
    literal, or `secret`, a reference to a secret holding {"username", "password"} JSON
    (docs/security.md), resolved only on the node that pulls."""

    username: str = ""
    password: str = field(default="", repr=False)
    server: str | None = None
    secret: SecretRef | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = (self.secret.to_dict() if self.secret is not None else
                             {"username": self.username, "password": self.password})
        return d | ({"server": self.server} if self.server else {})


@dataclass(frozen=True)
class JobSpec:
    """A validated, normalised job file. Build one with :func:`validate` or :func:`loads`."""

    name: str
    kind: str = "service"
    image: str | None = None
    command: tuple[str, ...] | None = None
    env: FrozenMap = field(default_factory=FrozenMap)
    count: int = 1
    resources: Resources = field(default_factory=Resources)
    ports: Mapping[str, Port] = field(default_factory=FrozenMap)  # FrozenMap of Port
    constraints: FrozenMap = field(default_factory=FrozenMap)
    spread: bool = False
    health: HealthCheck | None = None
    restart: RestartPolicy = field(default_factory=RestartPolicy)
    update: UpdatePolicy = field(default_factory=UpdatePolicy)
    grace: float = 3.0
    reschedule: ReschedulePolicy | None = None  # service and batch (validate fills it in)
    schedule: str | None = None
    timezone: str | None = None
    overlap: str | None = None
    catch_up: str | None = None
    payload: str | None = None
    log: LogConfig = field(default_factory=LogConfig)
    registry_auth: RegistryAuth | None = None
    user: str | None = None
    _fp: str | None = field(default=None, init=False, repr=False, compare=False, hash=False)

    # ---- storage

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/msgpack data that :meth:`from_dict` turns back into an equal spec."""
        d: dict[str, Any] = {"name": self.name, "kind": self.kind}
        if self.image is not None:
            d["image"] = self.image
        if self.command is not None:
            d["command"] = list(self.command)
        d["env"] = {k: plain(v) for k, v in self.env.items()}  # references as mappings
        d["count"] = self.count
        d["resources"] = self.resources.to_dict()
        d["ports"] = {k: p.to_dict() for k, p in self.ports.items()}
        d["constraints"] = self.constraints.to_dict()
        d["spread"] = self.spread
        if self.health is not None:
            d["health"] = self.health.to_dict()
        d["restart"] = self.restart.to_dict()
        d["update"] = self.update.to_dict()
        d["grace"] = self.grace
        if self.reschedule is not None:
            d["reschedule"] = self.reschedule.to_dict()
        for key in ("schedule", "timezone", "overlap", "catch_up", "payload"):
            if getattr(self, key) is not None:
                d[key] = getattr(self, key)
        d["log"] = self.log.to_dict()
        if self.registry_auth is not None:
            d["registry_auth"] = self.registry_auth.to_dict()
        if self.user is not None:
            d["user"] = self.user
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobSpec:
        """Validate stored data (also runs' longer names); raises SpecError listing every
        problem."""
        return validate(data, max_name=MAX_STORED_NAME)

    def fingerprint(self) -> str:
        """Hash of what a task's container is made of: changing it needs new tasks.

        Left out on purpose: count, spread, restart, update, grace and the cron/dispatch
        settings, which the conductor or node apply without replacing a running container.
        """
        if self._fp is not None:
            return self._fp
        d = self.to_dict()
        keep = ("kind", "image", "command", "env", "resources", "ports", "constraints",
                "health", "log", "registry_auth")
        fields = {k: d.get(k) for k in keep}
        if self.user is not None:  # only when set: older specs keep their fingerprint
            fields["user"] = self.user
        canon = json.dumps(fields, sort_keys=True, separators=(",", ":"))
        fp = hashlib.sha256(canon.encode()).hexdigest()[:16]
        object.__setattr__(self, "_fp", fp)  # frozen: cache the hash, it is pure
        return fp

    def replace(self, **changes: Any) -> JobSpec:
        """A copy with some fields changed (not re-validated: for code, not for users)."""
        return dataclasses.replace(self, **changes)

    def summary(self) -> str:
        """One line for listings and plan output."""
        r = self.resources
        what = self.image or " ".join(self.command or ())
        return (f"{self.name} ({self.kind}, count {self.count}, {r.cpus:g} cpus, "
                f"{r.memory // MIB} MiB, {what})")


PAYLOAD_ENV = "HELIOS_PAYLOAD"


def run_spec(parent: JobSpec, run_id: str, payload: str | None = None,
             env: Mapping[str, str] | None = None) -> JobSpec:
    """The batch job one cron tick or one dispatch of ``parent`` runs as.

    Why: the reconciler knows how to run batch jobs; a cron or parameterized job is only a
    template, and each firing becomes a child batch job named ``<parent>-<run_id>``
    (like Nomad's periodic and dispatched children). A dispatch ``payload`` (text, e.g.
    JSON) reaches the task as the ``HELIOS_PAYLOAD`` environment variable; ``env`` adds
    more variables.
    """
    merged = dict(parent.env) | dict(env or {})
    if payload is not None:
        merged[PAYLOAD_ENV] = payload
    return dataclasses.replace(
        parent, name=f"{parent.name}-{run_id}", kind="batch", env=FrozenMap(merged),
        schedule=None, timezone=None, overlap=None, catch_up=None, payload=None,
        reschedule=BATCH_RESCHEDULE)


# --------------------------------------------------------------------------- loading


def _duplicates(node: yaml.Node | None, path: str = "") -> list[Problem]:
    """Keys given twice in one mapping. YAML keeps the last one silently, which hides a
    mistake (two ``count:`` lines) that people then cannot find."""
    out: list[Problem] = []
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            sub = _join(path, str(key)) if key is not None else path
            if key is not None and key in seen:
                out.append(Problem(sub, f"given twice (again at line "
                                        f"{key_node.start_mark.line + 1}); remove one"))
            if key is not None:
                seen.add(key)
            out.extend(_duplicates(value_node, sub))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out.extend(_duplicates(item, f"{path}[{i}]"))
    return out


def loads(text: str, source: str = "job file") -> JobSpec:
    """Parse YAML or JSON text and validate it."""
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        duplicates = _duplicates(root)
        data = loader.construct_document(root) if root is not None else None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise SpecError([Problem("", f"{source} is not valid YAML/JSON{where}: {problem}")]) \
            from None
    finally:
        loader.dispose()
    if not isinstance(data, Mapping):
        raise SpecError([Problem("", f"{source} must be a mapping of fields, "
                                     f"got {_typename(data)}")])
    if duplicates:
        try:
            validate(data)
        except SpecError as e:
            raise SpecError(duplicates + e.problems) from None
        raise SpecError(duplicates)
    return validate(data)


def load_file(path: str) -> JobSpec:
    """Read and validate a job file (YAML or JSON). The one helper here that touches disk,
    for the CLI's boundary."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise SpecError([Problem("", f"cannot read {path}: {e.strerror}")]) from None
    return loads(text, source=path)


# --------------------------------------------------------------------------- validation


def _typename(v: object) -> str:
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
            self.err(path, f"must be a mapping, got {_typename(raw)}")
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
                self.err(_join(path, k), f"unknown field{extra}")
                continue
            out[k] = v
        return out

    def string(self, v: Any, path: str, *, nonempty: bool = True) -> str | None:
        if not isinstance(v, str):
            self.err(path, f"must be a string, got {_typename(v)}")
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
        self.err(path, f"must be a string, number or boolean, got {_typename(v)}")
        return None

    def integer(self, v: Any, path: str, lo: int, hi: int | None = None) -> int | None:
        if isinstance(v, bool) or not isinstance(v, int):
            self.err(path, f"must be a whole number, got {_typename(v)} {v!r}")
            return None
        if v < lo or (hi is not None and v > hi):
            rng = f"{lo}-{hi}" if hi is not None else f">= {lo}"
            self.err(path, f"{v} is out of range ({rng})")
            return None
        return v

    def boolean(self, v: Any, path: str) -> bool | None:
        if not isinstance(v, bool):
            self.err(path, f"must be true or false, got {_typename(v)} {v!r}")
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
            self.err(path, f"must be a non-empty list of strings, got {_typename(v)}")
            return None
        ok = True
        out = []
        for i, a in enumerate(v):
            if isinstance(a, bool) or not isinstance(a, str | int | float):
                self.err(f"{path}[{i}]", f"must be a string, got {_typename(a)}")
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
                self.err(_join(path, k), f"invalid name: {key_rule}")
                continue
            s = self.scalar_str(val, _join(path, k))
            if s is not None:
                out[k] = s
        return FrozenMap(out)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


_TOP = ("name", "kind", "image", "command", "env", "count", "resources", "ports",
        "constraints", "spread", "health", "restart", "update", "grace", "schedule",
        "timezone", "overlap", "catch_up", "payload", "log", "registry_auth", "user",
        "reschedule")


MAX_NAME = 63
MAX_STORED_NAME = 255  # a run of a cron/parameterized job appends "-<run id>" to the name


def validate(data: Mapping[str, Any], *, max_name: int = MAX_NAME) -> JobSpec:
    """Turn raw job-file data into a JobSpec, or raise SpecError naming every problem.

    ``max_name`` is 63 for what people submit; stored specs (``from_dict``) allow the
    longer names of runs made by :func:`run_spec`.
    """
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
    return JobSpec(**spec)


def _resources(c: _Checker, v: Any) -> Resources:
    m = c.mapping(v, "resources", ("cpus", "memory")) or {}
    cpus, memory = Resources.cpus, Resources.memory
    if "cpus" in m:
        x = m["cpus"]
        if isinstance(x, bool) or not isinstance(x, int | float):
            c.err("resources.cpus", f"must be a number of cpus (e.g. 0.25), got {_typename(x)}")
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
            c.err(_join("env", k), f"invalid name: {rule}")
        elif (ref := check_ref(c, val, _join("env", k))) is not None:
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


def describe_durations(spec: JobSpec) -> dict[str, str]:
    """Human text for the spec's durations (for `helios job status` style output)."""
    out = {"grace": format_duration(spec.grace),
           "update.deadline": format_duration(spec.update.deadline),
           "restart.backoff": format_duration(spec.restart.backoff)}
    if spec.health:
        out["health.interval"] = format_duration(spec.health.interval)
        out["health.timeout"] = format_duration(spec.health.timeout)
    return out
