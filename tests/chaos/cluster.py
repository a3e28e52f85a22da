"""The soak's cluster: a 3-server ZooKeeper ensemble, conductors and node daemons as real
processes on the real Docker daemon, and the primitives its nemesis uses to hurt them.

Every node daemon runs in a network namespace of its own, made here: a veth pair joins it
to the host, with private link-local addresses on the pair (169.254.X.4k+1 on the host end,
.4k+2 in the namespace). The namespace has no loopback of its own: its 127.0.0.0/8 is
routed over the veth (`route_localnet` on both ends), so the daemon reaches ZooKeeper, the
conductors and its containers' published ports on the host's 127.0.0.1 exactly as a
daemon outside would, and the conductors reach it at its advertised veth address. A
partition is then a few iptables rules *inside that namespace* (dropping the daemon's
traffic to the ZooKeeper ports, or to and from the conductors), so the host's own
firewall is never touched; healing flushes them. Namespaces and veth pairs carry the
soak's PID in their names; `sweep_leftovers()` removes those of soaks that died, and
`SoakCluster.stop()` removes its own.

The nodes' containers run under a **Docker daemon of the soak's own** (`PrivateDockerd`):
a second `dockerd` with its own `--data-root`, `--exec-root` (and so its own managed
containerd), `--pidfile` and socket `/run/hsoak<PID>.sock`, on a bridge made here
(`hsb<PID>`, a link-local /25) with `--iptables=false`, so it never touches the host's
firewall or the shared daemon. Published ports go through its userland proxy on the
host's 127.0.0.1, as before. The nodes find it through `DOCKER_HOST`; the test image is
imported into it. The `docker-restart` fault stops that daemon (SIGTERM by its PID) and
starts it again: the shared daemon is never restarted or stopped.

Everything is stopped by PID.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from helios.coordination.embedded import _process_alive
from tests.fixtures.common import free_port
from tests.fixtures.docker import SESSION_LABEL, TEST_LABEL, _rootfs_tar, _session_owner
from tests.fixtures.zookeeper import ZooKeeperEnsemble, start_ensemble
from tests.integration.procs import Proc

NS_PREFIX = "hsoak"
#: the soak's own Docker daemon: socket, pidfile and exec root are /run/<this><PID>...
DOCKERD_PREFIX = "hsoak"
#: bridge of the soak's Docker daemon (interface names: at most 15 characters)
BRIDGE_PREFIX = "hsb"
#: the ZooKeeper servers' tick: sessions of 0.8 - 8 s (and 4 s to sync a follower), so
#: expiries happen within a soak yet a loaded 2-core machine does not expire them all
TICK_MS = 400


def _ip(*args: str, ns: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(args)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=check)


def _pid_alive(pid: int) -> bool:
    return _process_alive(pid, "")


def _is_dockerd(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() == "dockerd"
    except OSError:
        return False


def sweep_leftovers() -> list[str]:
    """Remove the namespaces and veth pairs of soaks whose process is gone."""
    gone: list[str] = []
    out = _ip("ip", "netns", "list", check=False).stdout
    for line in out.splitlines():
        m = re.match(rf"({NS_PREFIX}-(\d+)-\w+)", line.strip())
        if m and not _pid_alive(int(m.group(2))):
            _ip("ip", "netns", "del", m.group(1), check=False)
            gone.append(m.group(1))
    for pidfile in Path("/run").glob(f"{DOCKERD_PREFIX}[0-9]*.pid"):
        owner = int(pidfile.stem[len(DOCKERD_PREFIX):])
        if not _pid_alive(owner):  # its soak died: stop the daemon that soak started
            PrivateDockerd(Path("/nonexistent"), owner).stop()
            gone.append(pidfile.stem)
    links = _ip("ip", "-o", "link", "show", check=False).stdout
    for m in re.finditer(rf"^\d+: ((?:hs(\d+)v\d+)|(?:{BRIDGE_PREFIX}(\d+)))[@:]", links,
                         re.M):
        if not _pid_alive(int(m.group(2) or m.group(3))):
            _ip("ip", "link", "del", m.group(1), check=False)
            gone.append(m.group(1))
    return gone


@dataclass
class NetNS:
    """A node's network namespace, joined to the host by one veth pair."""

    name: str
    host_if: str
    ns_if: str
    host_ip: str
    ns_ip: str
    blocked: list[list[str]] = field(default_factory=list)

    def create(self) -> None:
        _ip("ip", "netns", "add", self.name)
        _ip("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
        _ip("ip", "link", "set", self.ns_if, "netns", self.name)
        _ip("ip", "addr", "add", f"{self.host_ip}/30", "dev", self.host_if)
        _ip("ip", "link", "set", self.host_if, "up")
        _ip("sysctl", "-qw", f"net.ipv4.conf.{self.host_if}.route_localnet=1")
        _ip("ip", "addr", "add", f"{self.ns_ip}/30", "dev", self.ns_if, ns=self.name)
        _ip("ip", "link", "set", self.ns_if, "up", ns=self.name)
        _ip("sysctl", "-qw", "net.ipv4.conf.all.route_localnet=1", ns=self.name)
        _ip("sysctl", "-qw", f"net.ipv4.conf.{self.ns_if}.route_localnet=1", ns=self.name)
        # the node probes a host port by binding 127.0.0.1:PORT before it asks Docker to
        # publish it there; 127.0.0.1 is not local in here (and the probe would be about
        # the wrong namespace anyway), so let the bind succeed: Docker, on the host,
        # still refuses a port that is really taken, and each node has its own range
        _ip("sysctl", "-qw", "net.ipv4.ip_nonlocal_bind=1", ns=self.name)
        # no loopback in here: the host's 127.0.0.0/8 is one hop away
        _ip("ip", "route", "add", "127.0.0.0/8", "via", self.host_ip, "dev", self.ns_if,
            "src", self.ns_ip, ns=self.name)

    @property
    def prefix(self) -> list[str]:
        """Run a daemon in the namespace: `nsenter --net` (which execs: the PID is still
        ours) enters only the network namespace. Not `ip netns exec`: it also makes a
        mount namespace of its own, and as `/` is private here that copy pins every
        container rootfs mounted at that moment, so dockerd later cannot remove those
        containers ("device or resource busy")."""
        return ["nsenter", f"--net=/run/netns/{self.name}", "--"]

    def block(self, rules: list[list[str]]) -> None:
        """Add iptables rules (each `[CHAIN, match...]`, target DROP) in the namespace."""
        for r in rules:
            _ip("iptables", "-A", r[0], *r[1:], "-j", "DROP", ns=self.name)
            self.blocked.append(r)

    def heal(self) -> None:
        for r in self.blocked:
            _ip("iptables", "-D", r[0], *r[1:], "-j", "DROP", ns=self.name, check=False)
        self.blocked.clear()

    def destroy(self) -> None:
        _ip("ip", "link", "del", self.host_if, check=False)
        _ip("ip", "netns", "del", self.name, check=False)


class PrivateDockerd:
    """The soak's own Docker daemon, started and stopped by PID (see the module
    docstring): restarting it is a fault that hurts nobody else on the machine."""

    def __init__(self, workdir: Path, owner: int, subnet: int = 0) -> None:
        self.owner = owner
        self.tag = f"{DOCKERD_PREFIX}{owner}"
        self.sock = Path(f"/run/{self.tag}.sock")
        self.pidfile = Path(f"/run/{self.tag}.pid")
        self.exec_root = Path(f"/run/{self.tag}-exec")
        self.data_root = workdir / "dockerd"
        self.bridge = f"{BRIDGE_PREFIX}{owner}"
        self.bridge_ip = f"169.254.{subnet}.129/25"  # the nodes' veths use .1-.127
        self.log = workdir / "dockerd.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    @property
    def host(self) -> str:
        return f"unix://{self.sock}"

    @property
    def env(self) -> dict[str, str]:
        """The environment of a process that must use this daemon."""
        return {**os.environ, "DOCKER_HOST": self.host}

    def cli(self, *args: str, check: bool = True, timeout: float = 60,
            input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(["docker", "-H", self.host, *args], check=check,
                              timeout=timeout, capture_output=True, input=input)

    def start(self, image: str | None = None, timeout: float = 90.0) -> None:
        """Start the daemon (making its bridge the first time); import `image` (the
        busybox test image) unless it has it."""
        if _ip("ip", "link", "show", self.bridge, check=False).returncode != 0:
            _ip("ip", "link", "add", "name", self.bridge, "type", "bridge")
            _ip("ip", "addr", "add", self.bridge_ip, "dev", self.bridge)
            _ip("ip", "link", "set", self.bridge, "up")
        self.data_root.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                ["dockerd", "--data-root", str(self.data_root), "--exec-root",
                 str(self.exec_root), "--pidfile", str(self.pidfile), "-H", self.host,
                 "--bridge", self.bridge, "--iptables=false", "--ip-masq=false",
                 "--ip-forward=false", "--userland-proxy=true"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while not self._answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = self.log.read_text(errors="replace").splitlines()[-20:]
                raise RuntimeError("the soak's dockerd did not come up:\n" + "\n".join(tail))
            time.sleep(0.3)
        if image and self.cli("image", "inspect", image, check=False).returncode != 0:
            self.cli("import", "-", image, input=_rootfs_tar(), timeout=120)

    def _answers(self) -> bool:
        try:
            return self.cli("info", check=False, timeout=10).returncode == 0
        except subprocess.TimeoutExpired:  # starting up under load: ask again
            return False

    def restart(self, timeout: float = 90.0) -> None:
        """The `docker-restart` fault: SIGTERM by PID, wait for it to end, start again
        (its containers stop with it: no live-restore)."""
        self._terminate(timeout)
        self.restarts += 1
        self.start(timeout=timeout)

    def _terminate(self, timeout: float) -> None:
        pid = self.proc.pid if self.proc is not None else None
        if pid is None and self.pidfile.exists():  # a dead soak's daemon (sweep)
            with contextlib.suppress(ValueError):
                pid = int(self.pidfile.read_text().strip())
            if pid is not None and not _is_dockerd(pid):
                pid = None
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _pid_alive(pid) and time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                break
            time.sleep(0.2)
        if _pid_alive(pid) and (self.proc is None or self.proc.poll() is None):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)

    def remove_containers(self, label_filter: str) -> None:
        ids = self.cli("ps", "-aq", "--filter", f"label={label_filter}", check=False,
                       timeout=30).stdout.split()
        if ids:
            self.cli("rm", "-f", "-v", *(i.decode() for i in ids), check=False, timeout=120)

    def _leftover_shims(self) -> list[int]:
        """containerd shims of this daemon still alive: a shim outlives its containerd by
        design, and a start cut by a daemon restart leaves one behind."""
        marker = f"{self.exec_root}/containerd/".encode()
        pids = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                cmd = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if b"containerd-shim" in cmd.split(b"\0", 1)[0] and marker in cmd:
                pids.append(int(proc.name))
        return pids

    def stop(self) -> None:
        """Stop the daemon by PID, and the shims it left (by PID), remove its bridge and
        its data."""
        self._terminate(60.0)
        for pid in self._leftover_shims():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _ip("ip", "link", "del", self.bridge, check=False)
        for p in (self.sock, self.pidfile):
            with contextlib.suppress(OSError):
                p.unlink()
        for root in (self.exec_root, self.data_root):
            # what the daemon left mounted under its roots (a container's rootfs, the
            # netns files), deepest first, then the directories
            mounts = [line.split()[1] for line in
                      Path("/proc/self/mounts").read_text().splitlines()]
            for m in sorted((m for m in mounts if m.startswith(f"{root}/")), reverse=True):
                subprocess.run(["umount", "-l", m], capture_output=True, check=False,
                               timeout=30)
            shutil.rmtree(root, ignore_errors=True)


@dataclass
class Node:
    name: str
    proc: Proc
    ns: NetNS | None
    port: int


class SoakCluster:
    """ZooKeeper ensemble + conductors + node daemons for one soak; `stop()` undoes all."""

    def __init__(self, workdir: Path, image: str, *, nodes: int = 3, conductors: int = 2,
                 netns: bool = True, session_timeout: float = 6.0,
                 failover_grace: float = 1.0) -> None:
        self.workdir = workdir
        self.image = image
        self.run_id = uuid.uuid4().hex[:8]
        self.root = f"/soak-{self.run_id}"
        self.labels = {TEST_LABEL: f"soak-{self.run_id}", SESSION_LABEL: _session_owner()}
        self.session = session_timeout
        self.grace = failover_grace
        self.use_netns = netns
        self.n_nodes, self.n_conductors = nodes, conductors
        self.ensemble: ZooKeeperEnsemble | None = None
        self.conductors: dict[str, Proc] = {}
        self.conductor_ports: dict[str, int] = {}
        self.nodes: dict[str, Node] = {}
        self._subnet = int(uuid.uuid4().int % 200) + 20  # 169.254.<subnet>.0/24
        self.dockerd = PrivateDockerd(workdir, os.getpid(), self._subnet)

    @property
    def zk(self) -> str:
        assert self.ensemble is not None
        return f"{self.ensemble.hosts}{self.root}"

    @property
    def zk_hosts(self) -> str:
        assert self.ensemble is not None
        return self.ensemble.hosts

    @property
    def zk_ports(self) -> list[int]:
        assert self.ensemble is not None
        return [s.port for s in self.ensemble.servers]

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if (self.workdir / "zk").exists():
            raise RuntimeError(f"{self.workdir} holds another soak's cluster: use a new "
                               "directory")
        sweep_leftovers()
        self.dockerd.start(self.image)
        self.ensemble = start_ensemble(self.workdir / "zk", size=3, tick_ms=TICK_MS,
                                       timeout=180.0)
        for i in range(self.n_conductors):
            name = f"c{i + 1}-{self.run_id}"
            port = free_port()
            self.conductor_ports[name] = port
            self.conductors[name] = Proc(name, [
                "conductor", "--zk", self.zk, "--listen", f"127.0.0.1:{port}",
                "--name", name, "--session-timeout", str(self.session),
                "--failover-grace", str(self.grace), "--http", "off"], self.workdir).start()
        for i in range(self.n_nodes):
            self._start_node(i)

    def _start_node(self, i: int) -> None:
        name = f"n{i + 1}-{self.run_id}"
        ns: NetNS | None = None
        listen, extra = f"127.0.0.1:{free_port()}", []
        if self.use_netns:
            pid = os.getpid()
            base = 4 * i
            ns = NetNS(f"{NS_PREFIX}-{pid}-{i}", f"hs{pid}v{2 * i}", f"hs{pid}v{2 * i + 1}",
                       f"169.254.{self._subnet}.{base + 1}",
                       f"169.254.{self._subnet}.{base + 2}")
            ns.create()
            listen = f"{ns.ns_ip}:7101"
            # Containers run under the host's dockerd, whatever the node's namespace:
            # their ports are published on the host's loopback, not the node's address.
            extra = ["--advertise", ns.ns_ip, "--insecure", "--publish-address", "127.0.0.1"]
        lo = 30000 + 200 * i + (self._subnet * 7) % 100 * 20  # its own 20 host ports
        args = ["node", "--zk", self.zk, "--name", name, "--cpus", "2", "--memory", "1G",
                "--runtime", "docker", "--state-dir", str(self.workdir / name),
                "--session-timeout", str(self.session), "--listen", listen,
                "--port-range", f"{lo}-{lo + 19}", *extra]
        for k, v in self.labels.items():
            args += ["--container-label", f"{k}={v}"]
        proc = Proc(name, args, self.workdir, prefix=ns.prefix if ns else None,
                    env=self.dockerd.env).start()
        self.nodes[name] = Node(name, proc, ns, int(listen.rsplit(":", 1)[1]))

    # ------------------------------------------------------------------ fault primitives

    def partition_rules(self, node: Node, what: str) -> list[list[str]]:
        """iptables rules cutting `node` off from ZooKeeper (`zk`) or the conductors."""
        if what == "zk":
            return [["OUTPUT", "-p", "tcp", "-d", "127.0.0.1", "--dport", str(p)]
                    for p in self.zk_ports]
        out = [["OUTPUT", "-p", "tcp", "-d", "127.0.0.1", "--dport", str(p)]
               for p in self.conductor_ports.values()]
        return [*out, ["INPUT", "-p", "tcp", "--dport", str(node.port)]]

    def running_containers(self) -> list[dict[str, str]]:
        """This soak's running containers, straight from the Docker daemon."""
        fmt = "\t".join(["{{.ID}}", '{{.Label "io.helios.task"}}',
                         '{{.Label "io.helios.job"}}', '{{.Label "io.helios.node"}}'])
        r = self.dockerd.cli("ps", "--no-trunc", "--filter",
                             f"label={TEST_LABEL}={self.labels[TEST_LABEL]}",
                             "--format", fmt, check=False, timeout=30)
        if r.returncode != 0:
            raise RuntimeError(f"docker ps: {r.stderr.decode(errors='replace').strip()}")
        out = []
        for line in r.stdout.decode(errors="replace").splitlines():
            cid, task, job, node = ([*line.split("\t"), "", "", ""])[:4]
            out.append({"id": cid, "task": task, "job": job, "node": node})
        return out

    def heal_all(self) -> None:
        """Undo every fault still in place: thaw, heal partitions, restart what died."""
        for p in self.procs():
            if p.frozen:
                p.thaw()
        for n in self.nodes.values():
            if n.ns:
                n.ns.heal()
        assert self.ensemble is not None
        for s in self.ensemble.servers:
            if not s.running():
                s.start(wait=False)
        for p in self.procs():
            if not p.alive():
                p.start()

    def procs(self) -> list[Proc]:
        return list(self.conductors.values()) + [n.proc for n in self.nodes.values()]

    def stop(self) -> None:
        for p in reversed(self.procs()):
            with contextlib.suppress(Exception):
                p.stop(timeout=10)
        with contextlib.suppress(Exception):
            self.dockerd.remove_containers(f"{TEST_LABEL}={self.labels[TEST_LABEL]}")
        self.dockerd.stop()
        for n in self.nodes.values():
            if n.ns:
                n.ns.destroy()
        if self.ensemble is not None:
            self.ensemble.stop()

    def diagnostics(self, lines: int = 30) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.tail(lines)}" for p in self.procs())
