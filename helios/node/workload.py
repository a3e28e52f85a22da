"""What a node lets the containers it runs do: the node operator's rules, never a job's.

A job file comes from whoever may submit jobs; the machine belongs to its operator. So the
defaults are the restrictive ones (as Kubernetes' "restricted" Pod Security Standard):
no privilege escalation (`no-new-privileges`), a pids limit, every capability dropped but
a small set, and log drivers (and the addresses their options name) from an allow-list,
since a log driver makes the Docker daemon itself connect wherever its options say, with
the host's credentials (awslogs, gcplogs). Each rule can be widened on one node by a
`helios node` flag, and a refusal names the rule and that flag.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from helios.node.runtime.base import ContainerSpec, InvalidSpec

#: Capabilities every container keeps: what ordinary images need to start as root and
#: drop to their own user. Docker's default set also grants NET_RAW (packet spoofing),
#: MKNOD, AUDIT_WRITE, SETPCAP, SETFCAP and SYS_CHROOT; a node gives them back with
#: `--allow-cap`.
BASE_CAPS = frozenset({"CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "SETGID",
                       "SETUID", "NET_BIND_SERVICE"})
#: Drivers that write locally or to a collector the operator runs (their addresses are
#: still checked). The rest (awslogs, gcplogs, splunk, ...) need `--allow-log-driver`.
DEFAULT_LOG_DRIVERS = frozenset({"json-file", "local", "none", "journald", "fluentd",
                                 "gelf", "syslog"})
DEFAULT_PIDS_LIMIT = 1024


class WorkloadRefused(InvalidSpec):
    """A task asks for something this node's operator does not allow (permanent)."""


@dataclass(frozen=True)
class WorkloadPolicy:
    """One node's rules (from `helios node` flags; `run_node(workload=...)`)."""

    no_new_privileges: bool = True
    pids_limit: int = DEFAULT_PIDS_LIMIT  # 0: no limit
    extra_caps: frozenset[str] = frozenset()
    refuse_root: bool = False
    log_drivers: frozenset[str] = DEFAULT_LOG_DRIVERS
    #: hosts (or host:port) a log driver's address options may name beyond loopback
    log_addresses: frozenset[str] = field(default_factory=frozenset)
    #: the process runtime's task user when the daemon is root (None: `nobody`), and
    #: whether it may be root (runtime/process_user.py)
    process_user: str | None = None
    process_allow_root: bool = False

    @classmethod
    def from_flags(cls, *, allow_caps: Iterable[str] = (), pids_limit: int | None = None,
                   allow_privilege_escalation: bool = False, refuse_root: bool = False,
                   allow_log_drivers: Iterable[str] = (),
                   allow_log_addresses: Iterable[str] = (), process_user: str | None = None,
                   process_allow_root: bool = False) -> WorkloadPolicy:
        caps = frozenset(c.strip().upper().removeprefix("CAP_") for c in allow_caps if c)
        return cls(no_new_privileges=not allow_privilege_escalation,
                   pids_limit=DEFAULT_PIDS_LIMIT if pids_limit is None else pids_limit,
                   extra_caps=caps, refuse_root=refuse_root,
                   log_drivers=DEFAULT_LOG_DRIVERS | frozenset(allow_log_drivers),
                   log_addresses=frozenset(a.strip().lower() for a in allow_log_addresses),
                   process_user=process_user, process_allow_root=process_allow_root)

    def check(self, spec: ContainerSpec, node: str) -> None:
        """Raise `WorkloadRefused` naming the rule and the flag that would allow it."""
        if self.refuse_root and _is_root(spec.user):
            who = f"user {spec.user!r}" if spec.user else "the image's default user"
            raise WorkloadRefused(
                f"runs as root ({who}); node {node} refuses root tasks: set `user:` in the "
                "job file to a non-root user, or run the node without --refuse-root")
        driver = spec.log.driver
        if driver not in self.log_drivers:
            raise WorkloadRefused(
                f"log driver {driver!r} is not allowed on node {node} (allowed: "
                f"{', '.join(sorted(self.log_drivers))}); `helios node --allow-log-driver "
                f"{driver}` allows it")
        for key, value in spec.log.options.items():
            host = _address_host(key, str(value))
            if host is not None and not self._address_ok(host, str(value)):
                raise WorkloadRefused(
                    f"log option {key}={value!r} names {host}, which node {node} does not "
                    f"allow (loopback only by default); `helios node --allow-log-address "
                    f"{host}` allows it")

    def _address_ok(self, host: str, value: str) -> bool:
        if _loopback(host):
            return True
        allowed = self.log_addresses
        return host.lower() in allowed or _host_port(value).lower() in allowed

    def host_config(self) -> dict[str, Any]:
        """The Docker HostConfig fields these rules set."""
        out: dict[str, Any] = {"CapDrop": ["ALL"],
                               "CapAdd": sorted(BASE_CAPS | self.extra_caps)}
        if self.no_new_privileges:
            out["SecurityOpt"] = ["no-new-privileges:true"]
        if self.pids_limit > 0:
            out["PidsLimit"] = self.pids_limit
        return out


def _is_root(user: str | None) -> bool:
    if not user:
        return True  # the image decides, and most images run as root
    name = user.split(":", 1)[0]
    return name in ("root", "0")


def _address_host(key: str, value: str) -> str | None:
    """The host a log option makes the Docker daemon contact, if it names one."""
    if not (key.endswith("-address") or key.endswith("-url") or key.endswith("-host")
            or key in ("fluentd-address", "gelf-address", "syslog-address")):
        return None
    if value.startswith("unix://") or value.startswith("/"):
        return "unix"
    text = value if "://" in value else f"tcp://{value}"
    try:
        host = urlsplit(text).hostname
    except ValueError:
        return value
    return host or value


def _host_port(value: str) -> str:
    text = value if "://" in value else f"tcp://{value}"
    try:
        parts = urlsplit(text)
        return f"{parts.hostname}:{parts.port}" if parts.port else (parts.hostname or value)
    except ValueError:
        return value


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
