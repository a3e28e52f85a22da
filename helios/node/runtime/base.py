"""The container runtime interface that job actors drive.

A job actor owns one task and walks it through pull, create, start, health check, stop
and remove. It does so through `Runtime`, so the same actor code drives Docker
(`DockerRuntime`) and plain local processes (`ProcessRuntime`). Everything here is data
and small abstract methods; no I/O happens in this module.

Design choices that callers rely on:

- Every method is a trio coroutine and is cancellable; a job actor wraps calls in
  `trio.move_on_after` for its own deadlines, so the runtime itself imposes none beyond
  what the method signature says (`stop` grace, `exec` timeout).
- Every failure a user could cause or fix is a `RuntimeFailure` subclass whose `reason`
  is one readable sentence: it becomes the task's `failed` reason verbatim.
- Containers carry Helios labels (`LABEL_*`). After a node daemon restart, `list()` finds
  the containers of this node by label and `adopt()` takes them back (ports re-reserved),
  instead of starting duplicates.
- State records (`ContainerState`, `ExecResult`) hold only msgpack-serialisable values
  (str, int, float, bool, None, dicts of those), so an actor can send them as they are.
"""

from __future__ import annotations

import abc
import builtins
import json
import re
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Self

# --------------------------------------------------------------------------- labels

#: Every label Helios sets starts with this; test cleanup and adoption key on it.
LABEL_PREFIX = "io.helios."
#: Name of the node that created the container (adoption lists by this label).
LABEL_NODE = "io.helios.node"
#: Job name.
LABEL_JOB = "io.helios.job"
#: Task id (unique per task, stable across restarts of the task).
LABEL_TASK = "io.helios.task"
#: Job version the container was created for (a rollout compares it).
LABEL_VERSION = "io.helios.version"
#: JSON object: port name -> container port, so named host ports survive adoption.
LABEL_PORTS = "io.helios.ports"
#: Always "true": marks a container as managed by Helios at all.
LABEL_MANAGED = "io.helios.managed"
#: Id of the cluster whose node made the container: two clusters whose nodes share a name
#: and a Docker daemon must never adopt or remove each other's containers.
LABEL_CLUSTER = "io.helios.cluster"

# --------------------------------------------------------------------------- errors


class RuntimeFailure(Exception):
    """Base of every runtime error. `reason` is a sentence for the user (task `failed`)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return self.reason


class RuntimeUnavailable(RuntimeFailure):
    """The engine itself cannot be reached (Docker daemon down, socket missing)."""


class InvalidImageName(RuntimeFailure):
    """The image reference does not parse; no retry will help."""


class ImageNotFound(RuntimeFailure):
    """The registry (or the local store) has no such image or tag."""


class RegistryUnreachable(RuntimeFailure):
    """The registry could not be contacted (refused, DNS, timeout); a retry may help."""


class RegistryAuthFailed(RuntimeFailure):
    """The registry refused the credentials, or needs credentials that were not given."""


class ContainerNotFound(RuntimeFailure):
    """No container (or process record) with that id exists."""


class ContainerNotRunning(RuntimeFailure):
    """The operation needs a running container (exec) and this one is not running."""


class ContainerConflict(RuntimeFailure):
    """A container with that name already exists."""


class PortConflict(RuntimeFailure):
    """A requested host port is taken (by another task, or another process on the host)."""


class PortsExhausted(PortConflict):
    """The node's port range has no free port left."""


class InvalidSpec(RuntimeFailure):
    """The container spec cannot be run as given (bad limits, empty command...)."""


class ExecTimeout(RuntimeFailure):
    """An exec (health check command) did not finish within its timeout."""


class LogsUnavailable(RuntimeFailure):
    """The container's log driver does not keep logs locally, so they cannot be read back."""


class ContainerStartFailed(RuntimeFailure):
    """The engine refused to start the container (bad command, mount, ...)."""


# --------------------------------------------------------------------------- spec


@dataclass(frozen=True)
class PortMapping:
    """One named port: the port the program listens on, and an optional fixed host port.

    `host=None` lets the node's `PortAllocator` pick a host port from its range.
    """

    container: int
    host: int | None = None
    protocol: str = "tcp"


@dataclass(frozen=True)
class LogDriver:
    """Docker log driver and its options (`--log-driver`, `--log-opt`).

    json-file is the default because it is the one `docker logs` (and `Runtime.logs`) can
    always read back; fluentd, gelf and syslog send the output where operators already
    route Docker logs.
    """

    driver: str = "json-file"
    options: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RegistryCredentials:
    """Credentials for a private registry (sent to Docker as X-Registry-Auth)."""

    username: str
    password: str
    server: str | None = None  # defaults to the registry host of the image reference

    def __repr__(self) -> str:  # never log a password
        return (f"RegistryCredentials(username={self.username!r}, password='***', "
                f"server={self.server!r})")


@dataclass(frozen=True)
class Mount:
    """A host file or directory bind-mounted into the container.

    Only the node creates these (a dispatched run's payload file, for one): job files
    cannot ask for host paths, so a job cannot read the node's disk. The process runtime
    ignores mounts; its tasks see host paths directly.
    """

    source: str
    target: str
    read_only: bool = True


@dataclass(frozen=True)
class ContainerSpec:
    """Everything a runtime needs to create one task's container.

    `name` must be unique on the node (Docker container name). `job`, `task` and
    `version` become labels; `labels` adds free-form ones. `memory` is in bytes, `cpus` a
    fraction of cores (0.25 = a quarter core). The process runtime ignores `image`,
    `entrypoint`, limits and `log`.
    """

    name: str
    image: str
    command: Sequence[str] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    ports: Mapping[str, PortMapping] = field(default_factory=dict)
    cpus: float | None = None
    memory: int | None = None
    log: LogDriver = field(default_factory=LogDriver)
    registry_auth: RegistryCredentials | None = None
    job: str = ""
    task: str = ""
    version: int = 0
    entrypoint: Sequence[str] | None = None
    workdir: str | None = None
    mounts: Sequence[Mount] = ()
    user: str | None = None  # Docker's --user; None: the image's default

    def validate(self) -> None:
        """Refuse what no engine could run, with a reason naming the field."""
        if not _NAME_RE.fullmatch(self.name):
            raise InvalidSpec(f"container name {self.name!r} must match [a-zA-Z0-9][a-zA-Z0-9_.-]*")
        if self.cpus is not None and not self.cpus > 0:
            raise InvalidSpec(f"cpus must be positive, got {self.cpus}")
        if self.memory is not None and self.memory < 6 * 1024 * 1024:
            raise InvalidSpec(
                f"memory must be at least 6 MiB (Docker's minimum), got {self.memory}")
        for pname, p in self.ports.items():
            if not _PORT_NAME_RE.fullmatch(pname):
                raise InvalidSpec(f"port name {pname!r} must match [a-z0-9_-]+")
            if not 0 < p.container < 65536:
                raise InvalidSpec(f"port {pname}: container port {p.container} out of range")
            if p.host is not None and not 0 < p.host < 65536:
                raise InvalidSpec(f"port {pname}: host port {p.host} out of range")
            if p.protocol not in ("tcp", "udp"):
                raise InvalidSpec(f"port {pname}: protocol must be tcp or udp")
        for key in self.env:
            if not key or "=" in key:
                raise InvalidSpec(f"environment variable name {key!r} is invalid")
        for m in self.mounts:
            if not (m.source.startswith("/") and m.target.startswith("/")):
                raise InvalidSpec(f"mount {m.source!r} -> {m.target!r}: both paths must "
                                  "be absolute")


_NAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")
_PORT_NAME_RE = re.compile(r"[a-zA-Z0-9_-]+")


def helios_labels(node: str, spec: ContainerSpec, port_names: Mapping[str, int],
                  cluster: str | None = None) -> dict[str, str]:
    """The labels every Helios container carries, merged over the spec's own labels."""
    labels = dict(spec.labels)
    if cluster:
        labels[LABEL_CLUSTER] = cluster
    labels.update({
        LABEL_MANAGED: "true",
        LABEL_NODE: node,
        LABEL_JOB: spec.job,
        LABEL_TASK: spec.task,
        LABEL_VERSION: str(spec.version),
        LABEL_PORTS: json.dumps(dict(port_names), sort_keys=True),
    })
    return labels


def port_env(ports: Mapping[str, int], host_ports: Mapping[str, int]) -> dict[str, str]:
    """HELIOS_PORT_<NAME> (where to listen) and HELIOS_HOST_PORT_<NAME> for the program."""
    env: dict[str, str] = {}
    for name, port in ports.items():
        key = re.sub(r"[^A-Z0-9_]", "_", name.upper())
        env[f"HELIOS_PORT_{key}"] = str(port)
        if name in host_ports:
            env[f"HELIOS_HOST_PORT_{key}"] = str(host_ports[name])
    return env


# --------------------------------------------------------------------------- records


@dataclass
class ContainerState:
    """A runtime's view of one container (or process), as the job actor reports it.

    `status` is the engine's word: created, running, paused, restarting, removing,
    exited, dead. Times are Unix seconds (None when it never started/finished). `ports`
    maps port names to the host ports actually bound (empty while not running).
    """

    id: str
    name: str
    status: str
    running: bool
    exit_code: int | None = None
    started_at: float | None = None
    finished_at: float | None = None
    error: str = ""
    oom_killed: bool = False
    ports: dict[str, int] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    image: str = ""
    pid: int | None = None

    @property
    def job(self) -> str:
        return self.labels.get(LABEL_JOB, "")

    @property
    def task(self) -> str:
        return self.labels.get(LABEL_TASK, "")

    def to_dict(self) -> dict[str, Any]:
        """A msgpack-ready dict (for actor messages and status znodes)."""
        return asdict(self)


@dataclass(frozen=True)
class ExecResult:
    """Outcome of `Runtime.exec`: the exit code and the (bounded) combined output."""

    exit_code: int
    output: str


# --------------------------------------------------------------------------- interface


class Runtime(abc.ABC):
    """One engine on one node. Use as `async with runtime:` so its resources are owned.

    Ids are opaque strings returned by `create`. Methods raise `ContainerNotFound` for an
    unknown id, except `remove`, which is idempotent (removing twice is fine: the node
    reconciles level-triggered and may repeat itself).
    """

    #: "docker", "process" or "sim" (the CLI's --runtime value); for people to read:
    #: a caller asks the methods below, never which runtime it has.
    kind: ClassVar[str]
    #: True when a task does not see the node's files (a container): a file the node
    #: makes for it (a dispatched run's payload) must be bind-mounted (`Mount`).
    isolates_files: ClassVar[bool] = False

    def __init__(self, node: str) -> None:
        self.node = node
        #: the cluster id, once the node knows it (`owner_labels`)
        self.cluster: str | None = None

    def owner_labels(self) -> dict[str, str]:
        """The labels that make a container this node's: its name, and its cluster's id
        once known. `list` filters on them; nothing else is ever adopted or removed."""
        labels = {LABEL_NODE: self.node}
        if self.cluster:
            labels[LABEL_CLUSTER] = self.cluster
        return labels

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Acquire engine resources (connections, threads). Default: nothing."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release what `open` acquired. Containers keep running (the node may restart)."""

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def check_image(self, image: str) -> None:  # noqa: B027 - optional hook
        """Refuse an image reference this runtime cannot run (`InvalidSpec`,
        `InvalidImageName`) before anything is pulled or created. Default: any (the
        runtime ignores images)."""

    @abc.abstractmethod
    async def has_image(self, image: str) -> bool:
        """True when `image` is present locally, so no pull is needed (always true for a
        runtime that ignores images)."""

    @abc.abstractmethod
    async def pull(self, image: str, auth: RegistryCredentials | None = None) -> None:
        """Make `image` available locally, fetching it from its registry if needed."""

    @abc.abstractmethod
    async def create(self, spec: ContainerSpec) -> str:
        """Create (not start) the container; allocate its host ports. Returns its id."""

    @abc.abstractmethod
    async def start(self, cid: str) -> None:
        """Start a created container."""

    @abc.abstractmethod
    async def stop(self, cid: str, grace: float) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds. Stopping a stopped one is a no-op."""

    @abc.abstractmethod
    async def remove(self, cid: str) -> None:
        """Remove the container (killing it if running) and free its ports. Idempotent."""

    @abc.abstractmethod
    async def inspect(self, cid: str) -> ContainerState:
        """The current state record."""

    @abc.abstractmethod
    async def wait(self, cid: str) -> int:
        """Block until the container exits; return its exit code."""

    @abc.abstractmethod
    async def list(self, labels: Mapping[str, str] | None = None) -> list[ContainerState]:
        """Containers of this node (`owner_labels`) also carrying all `labels`."""

    @abc.abstractmethod
    async def adopt(self, cid: str) -> ContainerState:
        """Take back a container found by `list` after a restart: re-reserve its ports."""

    @abc.abstractmethod
    def logs(self, cid: str, *, follow: bool = False,
             tail: int | None = None) -> AsyncGenerator[str, None]:
        """Output lines (stdout and stderr, without newline), oldest first.

        `tail` limits to the last N lines; `follow` keeps yielding until the container
        stops. An async generator: close it (`contextlib.aclosing`) when stopping early.
        """

    async def read_logs(self, cid: str, cursor: str | None = None, *,
                        tail: int | None = None, limit: int = 10_000
                        ) -> tuple[builtins.list[str], str | None]:
        """At most `limit` lines after `cursor` (or the first ones / the last `tail` when
        it is None), and the cursor to pass next time.

        Why a cursor rather than a line number: `helios job logs --follow` asks again
        every second, and re-reading a long log each time would cost the node more the
        longer the task runs. A cursor is opaque and runtime-specific; engines override
        this to resume where the last read ended. This fallback counts lines.
        """
        return await read_logs_by_line(self, cid, cursor, tail=tail, limit=limit)

    @abc.abstractmethod
    async def exec(self, cid: str, argv: Sequence[str], timeout: float) -> ExecResult:
        """Run `argv` inside the running container; raise `ExecTimeout` past `timeout`."""


async def read_logs_by_line(runtime: Runtime, cid: str, cursor: str | None = None, *,
                            tail: int | None = None, limit: int = 10_000
                            ) -> tuple[list[str], str]:
    """`Runtime.read_logs` by counting lines (cursor `n<lines read>`): reads the whole log
    each time. Any runtime can answer it, so a line-count cursor (an older client's)
    keeps working whatever the engine's own cursor is."""
    lines: list[str] = []
    gen = runtime.logs(cid)
    try:
        async for line in gen:
            lines.append(line)
    finally:
        await gen.aclose()
    start = 0
    if cursor is not None and cursor.startswith("n") and cursor[1:].isdigit():
        start = min(int(cursor[1:]), len(lines))
    elif tail is not None:
        start = max(0, len(lines) - tail)
    chunk = lines[start:start + limit]
    return chunk, f"n{start + len(chunk)}"
