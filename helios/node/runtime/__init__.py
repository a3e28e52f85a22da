"""Container runtimes for the node: the interface job actors drive, and its engines.

`Runtime` is the interface (see `base`); `DockerRuntime` is the real engine and
`ProcessRuntime` runs commands as local processes on a machine without Docker;
`SimRuntime` simulates tasks for scale tests.
`PortAllocator` picks host ports for published container ports. Engines are imported
lazily so `import helios.node.runtime` does not pull aiodocker in where it is not used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from helios.node.runtime.base import (
    LABEL_CLUSTER,
    LABEL_JOB,
    LABEL_MANAGED,
    LABEL_NODE,
    LABEL_PORTS,
    LABEL_PREFIX,
    LABEL_TASK,
    LABEL_VERSION,
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
    Mount,
    PortConflict,
    PortMapping,
    PortsExhausted,
    RegistryAuthFailed,
    RegistryCredentials,
    RegistryUnreachable,
    Runtime,
    RuntimeFailure,
    RuntimeUnavailable,
)
from helios.node.runtime.ports import PortAllocator

if TYPE_CHECKING:
    from helios.node.runtime.docker import DockerRuntime
    from helios.node.runtime.process import ProcessRuntime
    from helios.node.runtime.sim import SimRuntime

__all__ = [
    "LABEL_CLUSTER",
    "LABEL_JOB",
    "LABEL_MANAGED",
    "LABEL_NODE",
    "LABEL_PORTS",
    "LABEL_PREFIX",
    "LABEL_TASK",
    "LABEL_VERSION",
    "ContainerConflict",
    "ContainerNotFound",
    "ContainerNotRunning",
    "ContainerSpec",
    "ContainerStartFailed",
    "ContainerState",
    "DockerRuntime",
    "ExecResult",
    "ExecTimeout",
    "ImageNotFound",
    "InvalidImageName",
    "InvalidSpec",
    "LogDriver",
    "LogsUnavailable",
    "Mount",
    "PortAllocator",
    "PortConflict",
    "PortMapping",
    "PortsExhausted",
    "ProcessRuntime",
    "RegistryAuthFailed",
    "RegistryCredentials",
    "RegistryUnreachable",
    "Runtime",
    "RuntimeFailure",
    "RuntimeUnavailable",
    "SimRuntime",
]


def __getattr__(name: str) -> Any:
    """Lazy engines: DockerRuntime imports aiodocker/aiohttp, which a process node skips."""
    if name == "DockerRuntime":
        from helios.node.runtime.docker import DockerRuntime

        return DockerRuntime
    if name == "ProcessRuntime":
        from helios.node.runtime.process import ProcessRuntime

        return ProcessRuntime
    if name == "SimRuntime":
        from helios.node.runtime.sim import SimRuntime

        return SimRuntime
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
