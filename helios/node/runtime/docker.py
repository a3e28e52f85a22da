"""The Docker runtime: aiodocker driven from trio through `AsyncioBridge`.

Each public method is one bridge round trip: the trio side calls one small asyncio
coroutine (`_a_*`) that makes the aiodocker calls it needs, so the bridge cost is paid
once per operation, not once per HTTP request. aiodocker errors are translated here, at
the boundary, into the `RuntimeFailure` family with a reason a user can act on.

What the containers get, and why:

- resource limits: `NanoCpus` (cpus x 1e9) and `Memory` (bytes; `MemorySwap` set to the
  same value so the limit is the limit, not limit + swap);
- ports published on 127.0.0.1 only, at host ports chosen by the node's
  `PortAllocator` (or the fixed `host:` port), so nothing is exposed beyond the machine
  unless an operator puts a proxy in front;
- Helios labels (`io.helios.node`, `.job`, `.task`, `.version`, `.ports`, `.managed`) so
  a restarted node can find and adopt its containers;
- the job's log driver (json-file by default; fluentd, gelf, syslog with options);
- restart policy "no": restarts belong to the job actor (with backoff and reporting),
  not to dockerd behind its back.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import math
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar

import aiodocker
import trio
from aiodocker.exceptions import DockerError

from helios.metrics import observe_docker
from helios.node.runtime.aio_bridge import AsyncioBridge, BridgeClosed
from helios.node.runtime.base import (
    LABEL_PORTS,
    ContainerConflict,
    ContainerNotFound,
    ContainerNotRunning,
    ContainerSpec,
    ContainerStartFailed,
    ContainerState,
    ExecResult,
    ExecTimeout,
    ImageNotFound,
    InvalidImageName,
    InvalidSpec,
    LogDriver,
    LogsUnavailable,
    PortConflict,
    RegistryAuthFailed,
    RegistryCredentials,
    RegistryUnreachable,
    Runtime,
    RuntimeFailure,
    RuntimeUnavailable,
    helios_labels,
    port_env,
)
from helios.node.runtime.ports import PortAllocator
from helios.node.workload import WorkloadPolicy

#: Exec output kept for a health check reason (the rest is read and dropped).
EXEC_OUTPUT_LIMIT = 64 * 1024

# A practical subset of Docker's reference grammar: enough to refuse obvious garbage
# (spaces, upper case repository, empty parts) before asking the daemon. The daemon
# remains the judge for everything else (its 400 also maps to InvalidImageName).
_IMAGE_RE = re.compile(
    r"^(?:(?P<registry>[a-zA-Z0-9.-]+(?::[0-9]+)?)/)?"
    r"(?P<repo>[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?"
    r"(?:@(?P<digest>[a-z0-9]+:[a-fA-F0-9]{32,}))?$"
)


#: json-file logs are capped unless the job says otherwise: Docker's own default keeps
#: every byte a container ever wrote, on the node's disk
JSON_FILE_DEFAULTS = {"max-size": "10m", "max-file": "3"}
#: the most of a container's log one read returns (and holds in memory)
MAX_READ_BYTES = 1024 * 1024


def log_options(log: LogDriver) -> dict[str, str]:
    """The driver's options as Docker takes them, with json-file's size cap by default."""
    options = {k: str(v) for k, v in log.options.items()}
    if log.driver == "json-file":
        for key, value in JSON_FILE_DEFAULTS.items():
            options.setdefault(key, value)
    return options


def check_image_name(image: str) -> None:
    """Raise `InvalidImageName` unless `image` looks like a Docker image reference."""
    if not image or not _IMAGE_RE.fullmatch(image):
        raise InvalidImageName(
            f"image name {image!r} is not a valid Docker image reference "
            "(expected [registry/]repository[:tag][@digest], repository in lower case)")


def _registry_host(image: str) -> str | None:
    """The registry part of a reference, or None for Docker Hub short names."""
    first, sep, _ = image.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first
    return None


_STAMP = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$")


def _split_stamp(value: str) -> tuple[int, str] | None:
    """Docker's RFC 3339 timestamp (nanoseconds, 'Z') -> (whole Unix seconds, the
    fraction's digits), or None when it does not parse."""
    m = _STAMP.fullmatch(value)
    if not m:
        return None
    base, frac, tz = m.groups()
    dt = datetime.fromisoformat(base + ("+00:00" if tz == "Z" else tz))
    return int(dt.timestamp()), frac or ""


def _parse_time(value: str | None) -> float | None:
    """Docker's RFC 3339 timestamp to Unix seconds; its zero time to None."""
    if not value or value.startswith("0001-01-01"):
        return None
    parts = _split_stamp(value)
    if parts is None:
        return None
    secs, frac = parts
    return secs + (float("0." + frac) if frac else 0.0)


def _since_param(stamp: str) -> str | None:
    """A log line's timestamp as the `since` the Engine API takes (`<seconds>.<nanos>`,
    exact: a float would lose the nanoseconds)."""
    parts = _split_stamp(stamp)
    return None if parts is None else f"{parts[0]}.{parts[1].ljust(9, '0')[:9]}"


def _logs_failure(err: DockerError, cid: str) -> RuntimeFailure:
    """A failed log read: a driver that keeps nothing locally is its own failure."""
    if err.status == 501 or "does not support reading" in str(err.message):
        return LogsUnavailable(f"the log driver of {cid[:12]} does not keep logs on the "
                               f"node: {err.message}")
    return _common_failure(err, cid, "reading logs")


def _pull_failure(image: str, err: DockerError) -> RuntimeFailure:
    """Translate a pull error into the failure a user can act on."""
    msg = str(err.message)  # typed str, but aiodocker passes on what the API sent
    low = msg.lower()
    if err.status == 900:
        return RuntimeUnavailable(f"Docker daemon unreachable while pulling {image}: {msg}")
    if "invalid reference format" in low or err.status == 400:
        return InvalidImageName(f"image name {image!r} is invalid: {msg}")
    if ("unauthorized" in low or "authentication required" in low
            or "no basic auth credentials" in low or "incorrect username or password" in low):
        return RegistryAuthFailed(
            f"registry refused access to {image} (wrong or missing credentials): {msg}")
    if ("manifest unknown" in low or "not found" in low or "pull access denied" in low
            or err.status == 404):
        return ImageNotFound(f"image {image} was not found in its registry: {msg}")
    if any(s in low for s in ("connection refused", "no such host", "i/o timeout",
                              "dial tcp", "timeout", "network is unreachable",
                              "connection reset", "tls:", "server gave http response")):
        host = _registry_host(image) or "docker.io"
        return RegistryUnreachable(f"registry {host} is unreachable while pulling {image}: {msg}")
    return RuntimeFailure(f"pulling {image} failed: {msg}")


def _common_failure(err: DockerError, cid: str, doing: str) -> RuntimeFailure:
    """Errors any container call can hit: daemon gone, unknown container."""
    if err.status == 900:
        return RuntimeUnavailable(f"Docker daemon unreachable while {doing}: {err.message}")
    if err.status == 404:
        return ContainerNotFound(f"container {cid} does not exist")
    return RuntimeFailure(f"Docker refused {doing} for {cid}: {err.message}")


#: Open requests to the daemon at once. Every running task holds one (its `wait`), so
#: aiohttp's default pool of 100 would starve every other call on a node with about a
#: hundred tasks; the daemon itself takes thousands of connections.
CONNECTION_LIMIT = 4096


async def _make_client(url: str | None) -> aiodocker.Docker:
    """An aiodocker client whose connection pool is not the bottleneck of a busy node.

    aiodocker resolves the daemon's address (`url`, `DOCKER_HOST`, the Docker context,
    the default sockets); for a unix socket, the usual case, the client is made again
    over a connector with `CONNECTION_LIMIT`."""
    import aiohttp

    client = aiodocker.Docker(url=url)
    if not isinstance(client.connector, aiohttp.UnixConnector):
        return client
    path = client.connector.path
    await client.close()
    connector = aiohttp.UnixConnector(path, limit=CONNECTION_LIMIT,
                                      limit_per_host=CONNECTION_LIMIT)
    return aiodocker.Docker(url="unix://localhost", connector=connector)


async def _close_client(client: aiodocker.Docker) -> None:
    """Close the client and its connector (a connector passed in is not the client's to
    close)."""
    connector = client.connector
    await client.close()
    if not connector.closed:
        await connector.close()


class DockerRuntime(Runtime):
    """Runs each task as a Docker container. `async with DockerRuntime(node, ...) as rt`.

    `url` is the Docker endpoint (default: DOCKER_HOST or /var/run/docker.sock).
    `ports` is the node's allocator; one is made for 21000-21999 when not given.
    """

    kind: ClassVar[str] = "docker"
    isolates_files: ClassVar[bool] = True

    def __init__(self, node: str, *, ports: PortAllocator | None = None,
                 url: str | None = None, bind_host: str = "127.0.0.1",
                 workload: WorkloadPolicy | None = None) -> None:
        super().__init__(node)
        #: the node operator's rules for containers (restrictive by default)
        self.workload = workload if workload is not None else WorkloadPolicy()
        self.ports = ports if ports is not None else PortAllocator(host=bind_host)
        self.bind_host = bind_host
        self._url = url
        self._bridge = AsyncioBridge(name=f"helios-docker-{node}")
        self._docker: aiodocker.Docker | None = None
        self._owners: dict[str, str] = {}  # container id -> port owner (container name)

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        """Start the bridge and make the aiodocker client on its loop (no daemon call)."""
        await self._bridge.open()

        self._docker = await self._bridge.run(_make_client, self._url)

    async def aclose(self) -> None:
        """Close the client and the bridge. Containers are left running on purpose."""
        if self._docker is not None:
            docker, self._docker = self._docker, None
            with trio.CancelScope(shield=True), contextlib.suppress(BridgeClosed, DockerError):
                await self._bridge.run(_close_client, docker)
        await self._bridge.aclose()

    @property
    def bridge(self) -> AsyncioBridge:
        """The bridge (exposed for the benchmark and for tests)."""
        return self._bridge

    def _client(self) -> aiodocker.Docker:
        if self._docker is None:
            raise RuntimeUnavailable("the Docker runtime is not open")
        return self._docker

    async def _run(self, fn: Any, *args: Any) -> Any:
        started = time.monotonic()
        try:
            return await self._bridge.run(fn, *args)
        except BridgeClosed as e:
            raise RuntimeUnavailable(f"the Docker runtime is closed: {e}") from e
        finally:
            # `helios_docker_request_seconds{op}`: op is the method (`pull`, `start`...)
            # whose local `call` this is
            parts = getattr(fn, "__qualname__", "").split(".")
            observe_docker(self.node, parts[-3] if len(parts) >= 3 else parts[-1],
                           time.monotonic() - started)

    async def ping(self) -> str:
        """Check the daemon answers; returns its version. Raises `RuntimeUnavailable`."""
        docker = self._client()

        async def call() -> str:
            info = await docker.version()
            return str(info.get("Version", "?"))

        try:
            return await self._run(call)
        except DockerError as e:
            raise RuntimeUnavailable(f"Docker daemon unreachable: {e.message}") from e

    # ------------------------------------------------------------------ images

    async def pull(self, image: str, auth: RegistryCredentials | None = None) -> None:
        """Pull `image` (default tag latest), with X-Registry-Auth when `auth` is given."""
        check_image_name(image)
        docker = self._client()
        ref = image
        auth_obj: dict[str, Any] | None = None
        if auth is not None:
            host = auth.server or _registry_host(image)
            if _registry_host(image) is None:
                ref = "docker.io/" + image  # aiodocker wants the registry host in the name
            auth_obj = {"username": auth.username, "password": auth.password}
            if host:
                auth_obj["serveraddress"] = host

        async def call() -> None:
            await docker.images.pull(ref, auth=auth_obj)

        try:
            await self._run(call)
        except DockerError as e:
            raise _pull_failure(image, e) from None

    def check_image(self, image: str) -> None:
        """A container needs an image, and its reference must parse."""
        if not image:
            raise InvalidSpec("the job names no image (the docker runtime needs one)")
        check_image_name(image)

    async def has_image(self, image: str) -> bool:
        """True when the image is present locally (a node may skip a pull then)."""
        docker = self._client()

        async def call() -> bool:
            try:
                await docker.images.inspect(image)
            except DockerError as e:
                if e.status == 404:
                    return False
                raise
            return True

        try:
            return await self._run(call)
        except DockerError as e:
            raise _common_failure(e, image, "inspecting an image") from None

    # ------------------------------------------------------------------ containers

    def _config(self, spec: ContainerSpec, host_ports: Mapping[str, int]) -> dict[str, Any]:
        """The Docker Engine API create body for `spec` (pure, tested on its own)."""
        container_ports = {n: p.container for n, p in spec.ports.items()}
        env = dict(port_env(container_ports, host_ports))
        env.update(spec.env)
        exposed: dict[str, dict[str, Any]] = {}
        bindings: dict[str, list[dict[str, str]]] = {}
        for name, p in spec.ports.items():
            key = f"{p.container}/{p.protocol}"
            exposed[key] = {}
            bindings.setdefault(key, []).append(
                {"HostIp": self.bind_host, "HostPort": str(host_ports[name])})
        host_config: dict[str, Any] = {
            "PortBindings": bindings,
            "RestartPolicy": {"Name": "no"},
            "LogConfig": {"Type": spec.log.driver, "Config": log_options(spec.log)},
        }
        if spec.mounts:
            host_config["Mounts"] = [{"Type": "bind", "Source": m.source,
                                      "Target": m.target, "ReadOnly": m.read_only}
                                     for m in spec.mounts]
        if spec.cpus is not None:
            host_config["NanoCpus"] = int(spec.cpus * 1e9)
        if spec.memory is not None:
            host_config["Memory"] = int(spec.memory)
            host_config["MemorySwap"] = int(spec.memory)
        config: dict[str, Any] = {
            "Image": spec.image,
            "Env": [f"{k}={v}" for k, v in env.items()],
            "Labels": helios_labels(self.node, spec, container_ports, self.cluster),
            "ExposedPorts": exposed,
            "HostConfig": host_config,
        }
        if spec.command:
            config["Cmd"] = list(spec.command)
        if spec.entrypoint is not None:
            config["Entrypoint"] = list(spec.entrypoint)
        if spec.workdir:
            config["WorkingDir"] = spec.workdir
        if spec.user:
            config["User"] = spec.user
        host_config.update(self.workload.host_config())
        return config

    async def create(self, spec: ContainerSpec) -> str:
        """Create the container with ports allocated; ports are freed again on failure.

        If the caller is cancelled mid-request, Docker may still have created the
        container: it carries the node's labels, so the node's reconciliation (list, then
        remove what no assignment owns) cleans it up. The node's workload rules are
        checked first (`WorkloadRefused` names the rule and the flag that allows it).
        """
        spec.validate()
        self.workload.check(spec, self.node)
        check_image_name(spec.image)
        docker = self._client()
        host_ports = self.ports.allocate(spec.name, {n: p.host for n, p in spec.ports.items()})
        config = self._config(spec, host_ports)

        async def call() -> str:
            container = await docker.containers.create(config, name=spec.name)
            return container.id

        try:
            cid: str = await self._run(call)
        except BaseException as e:
            self.ports.release(spec.name)
            if isinstance(e, DockerError):
                msg = e.message
                if e.status == 404 and "image" in str(msg).lower():
                    raise ImageNotFound(
                        f"image {spec.image} is not present on this node (pull it first)"
                    ) from None
                if e.status == 409:
                    raise ContainerConflict(
                        f"a container named {spec.name} already exists") from None
                if e.status == 400:
                    raise InvalidSpec(f"Docker refused the container spec: {msg}") from None
                raise _common_failure(e, spec.name, "creating a container") from None
            raise
        self._owners[cid] = spec.name
        return cid

    async def start(self, cid: str) -> None:
        """Start; a port clash at bind time becomes `PortConflict`."""
        docker = self._client()

        async def call() -> None:
            await docker.containers.container(cid).start()

        try:
            await self._run(call)
        except DockerError as e:
            low = str(e.message).lower()
            if "port is already allocated" in low or "address already in use" in low:
                raise PortConflict(f"container {cid[:12]} could not bind its host port: "
                                   f"{e.message}") from None
            if e.status in (404, 900):
                raise _common_failure(e, cid, "starting") from None
            raise ContainerStartFailed(f"container failed to start: {e.message}") from None

    async def stop(self, cid: str, grace: float) -> None:
        """docker stop: SIGTERM (or the image's StopSignal), SIGKILL after ceil(grace) s."""
        docker = self._client()
        t = max(0, math.ceil(grace))

        async def call() -> None:
            await docker.containers.container(cid).stop(t=t)

        try:
            await self._run(call)
        except DockerError as e:
            raise _common_failure(e, cid, "stopping") from None

    async def kill(self, cid: str, signal: str = "SIGKILL") -> None:
        """Send a signal now (a job actor's last resort)."""
        docker = self._client()

        async def call() -> None:
            await docker.containers.container(cid).kill(signal=signal)

        try:
            await self._run(call)
        except DockerError as e:
            if e.status == 409:  # not running: nothing to kill
                return
            raise _common_failure(e, cid, "killing") from None

    async def remove(self, cid: str) -> None:
        """Force-remove (with anonymous volumes); already gone is fine. Frees its ports."""
        docker = self._client()
        owner = self._owners.pop(cid, None)

        async def call() -> str | None:
            container = docker.containers.container(cid)
            name: str | None = None
            if owner is None:
                try:
                    info = await container.show()
                    name = str(info.get("Name", "")).lstrip("/") or None
                except DockerError as e:
                    if e.status != 404:
                        raise
                    return None
            try:
                await container.delete(force=True, v=True)
            except DockerError as e:
                # 404: already gone; 409: removal already in progress.
                if e.status not in (404, 409):
                    raise
            return name

        try:
            name = await self._run(call)
        except DockerError as e:
            if owner is not None:
                self._owners[cid] = owner
            raise _common_failure(e, cid, "removing") from None
        if owner or name:
            self.ports.release(owner or name or "")

    def _state(self, info: Mapping[str, Any]) -> ContainerState:
        """A `ContainerState` from `docker inspect` output (pure)."""
        st = info.get("State") or {}
        config = info.get("Config") or {}
        labels = dict(config.get("Labels") or {})
        try:
            names = {int(v): k for k, v in json.loads(labels.get(LABEL_PORTS, "{}")).items()}
        except (ValueError, AttributeError):
            names = {}
        bound: dict[str, int] = {}
        for key, binds in ((info.get("NetworkSettings") or {}).get("Ports") or {}).items():
            port = int(key.split("/")[0])
            for b in binds or []:
                if b.get("HostPort") and port in names:
                    bound[names[port]] = int(b["HostPort"])
                    break
        running = bool(st.get("Running"))
        status = str(st.get("Status", "unknown"))
        return ContainerState(
            id=str(info.get("Id", "")),
            name=str(info.get("Name", "")).lstrip("/"),
            status=status,
            running=running,
            exit_code=None if running or status == "created" else int(st.get("ExitCode", 0)),
            started_at=_parse_time(st.get("StartedAt")),
            finished_at=_parse_time(st.get("FinishedAt")),
            error=str(st.get("Error") or ""),
            oom_killed=bool(st.get("OOMKilled")),
            ports=bound,
            labels=labels,
            image=str(config.get("Image", "")),
            pid=int(st["Pid"]) if st.get("Pid") else None,
        )

    async def inspect_raw(self, cid: str) -> dict[str, Any]:
        """The full `docker inspect` document (for tests and debugging)."""
        docker = self._client()

        async def call() -> dict[str, Any]:
            return await docker.containers.container(cid).show()

        try:
            return await self._run(call)
        except DockerError as e:
            raise _common_failure(e, cid, "inspecting") from None

    async def inspect(self, cid: str) -> ContainerState:
        return self._state(await self.inspect_raw(cid))

    async def wait(self, cid: str) -> int:
        """Long-poll until exit; cancelling the trio caller cancels the request."""
        docker = self._client()

        async def call() -> int:
            result = await docker.containers.container(cid).wait()
            return int(result.get("StatusCode", -1))

        try:
            return await self._run(call)
        except DockerError as e:
            raise _common_failure(e, cid, "waiting") from None

    async def list(self, labels: Mapping[str, str] | None = None) -> list[ContainerState]:
        """This node's containers (running or not) carrying all `labels`."""
        docker = self._client()
        wanted = {**self.owner_labels(), **(labels or {})}
        filters = json.dumps({"label": [f"{k}={v}" for k, v in wanted.items()]})

        async def call() -> list[dict[str, Any]]:
            found = await docker.containers.list(all=True, filters=filters)
            infos = []
            for c in found:
                try:
                    infos.append(await c.show())
                except DockerError as e:
                    if e.status != 404:  # removed between list and inspect
                        raise
            return infos

        try:
            infos = await self._run(call)
        except DockerError as e:
            raise _common_failure(e, "(list)", "listing containers") from None
        return [self._state(i) for i in infos]

    async def adopt(self, cid: str) -> ContainerState:
        """Own a container found after a restart: its bound (or configured) host ports."""
        info = await self.inspect_raw(cid)
        state = self._state(info)
        ports = set(state.ports.values())
        host_config = info.get("HostConfig") or {}
        for binds in (host_config.get("PortBindings") or {}).values():
            for b in binds or []:
                if b.get("HostPort"):
                    ports.add(int(b["HostPort"]))
        for port in sorted(ports):
            self.ports.reserve(state.name, port)
        self._owners[state.id] = state.name
        return state

    # ------------------------------------------------------------------ logs, exec

    async def logs(self, cid: str, *, follow: bool = False,
                   tail: int | None = None) -> AsyncGenerator[str, None]:
        """Lines from the daemon's local log store (json-file, local, or the 20.10+ cache).

        stdout and stderr are interleaved as Docker returns them.
        """
        docker = self._client()
        params: dict[str, Any] = {"tail": "all" if tail is None else str(tail)}
        buf = ""
        try:
            if not follow:
                async def call() -> list[str]:
                    return await docker.containers.container(cid).log(
                        stdout=True, stderr=True, **params)

                chunks = await self._run(call)
                text = "".join(chunks)
                lines = text.split("\n")
                if lines and lines[-1] == "":
                    lines.pop()
                for line in lines:
                    yield line
                return

            def make() -> AsyncIterator[str]:
                return docker.containers.container(cid).log(
                    stdout=True, stderr=True, follow=True, **params)

            async for chunk in self._bridge.iterate(make):
                buf += chunk
                *complete, buf = buf.split("\n")
                for line in complete:
                    yield line
            if buf:
                yield buf
        except BridgeClosed as e:
            raise RuntimeUnavailable(f"the Docker runtime is closed: {e}") from e
        except DockerError as e:
            raise _logs_failure(e, cid) from None

    async def read_logs(self, cid: str, cursor: str | None = None, *,
                        tail: int | None = None, limit: int = 10_000,
                        max_bytes: int = MAX_READ_BYTES) -> tuple[builtins.list[str], str | None]:
        """Resume after `cursor` with the Engine API's `since`, so a follower reads only
        what is new. The cursor is `t<timestamp of the last line>#<lines at exactly that
        timestamp already read>`: `since` includes its own instant, and two lines can
        share one nanosecond. At most `limit` lines and about `max_bytes` are returned;
        the cursor then points after the last one returned."""
        docker = self._client()
        params: dict[str, Any] = {"timestamps": True}
        last, seen = "", 0
        if cursor and cursor.startswith("t") and "#" in cursor:
            last, _, n = cursor[1:].rpartition("#")
            since = _since_param(last)
            if since is None or not n.isdigit():
                last = ""
            else:
                params["since"], seen = since, int(n)
        if not last:
            params["tail"] = "all" if tail is None else str(tail)

        async def call() -> list[str]:
            return await docker.containers.container(cid).log(
                stdout=True, stderr=True, **params)

        try:
            text = "".join(await self._run(call))
        except DockerError as e:
            raise _logs_failure(e, cid) from None
        lines: list[str] = []
        at, count = last, seen
        taken = 0
        for raw in text.split("\n"):
            if len(lines) >= limit or (lines and taken + len(raw) > max_bytes):
                break
            if not raw:
                continue
            stamp, _, line = raw.partition(" ")
            if stamp == last and seen > 0:
                seen -= 1  # returned by the previous read
                continue
            count = count + 1 if stamp == at else 1
            at = stamp
            lines.append(line)
            taken += len(raw) + 1
        return lines, (f"t{at}#{count}" if at else cursor)

    async def exec(self, cid: str, argv: Sequence[str], timeout: float) -> ExecResult:
        """Run argv in the container, capture up to EXEC_OUTPUT_LIMIT bytes of output.

        On timeout the exec'd process is left to the container (the Engine API has no
        way to kill one exec); the caller gets `ExecTimeout`.
        """
        docker = self._client()
        cmd = list(argv)
        if not cmd:
            raise InvalidSpec("exec needs a command")

        async def call() -> tuple[int, bytes]:
            ex = await docker.containers.container(cid).exec(cmd, stdout=True, stderr=True)
            out = bytearray()
            async with ex.start(detach=False) as stream:
                for _ in range(1_000_000):  # bounded; the caller's timeout bounds time
                    msg = await stream.read_out()
                    if msg is None:
                        break
                    if len(out) < EXEC_OUTPUT_LIMIT:
                        out += msg.data[: EXEC_OUTPUT_LIMIT - len(out)]
            info = await ex.inspect()
            code = info.get("ExitCode")
            return (-1 if code is None else int(code)), bytes(out)

        with trio.move_on_after(timeout) as scope:
            try:
                code, out = await self._run(call)
            except DockerError as e:
                if e.status == 409:
                    raise ContainerNotRunning(
                        f"container {cid[:12]} is not running, cannot exec") from None
                raise _common_failure(e, cid, "exec") from None
        if scope.cancelled_caught:
            raise ExecTimeout(f"command {cmd} did not finish within {timeout:g}s")
        return ExecResult(exit_code=code, output=out.decode("utf-8", "replace"))
