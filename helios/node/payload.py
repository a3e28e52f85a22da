"""The node's side of a dispatched run's payload (the conductor's side is
`helios.conductor.dispatch`): the payload travels in the run's spec as `HELIOS_PAYLOAD`;
only the node knows where files live, so it writes the same bytes to a file and names it
in `HELIOS_PAYLOAD_FILE` (`helios job dispatch`, docs/cli.md).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from helios.spec import PAYLOAD_ENV

__all__ = ["PAYLOAD_CONTAINER_PATH", "PAYLOAD_FILE_ENV", "materialise_payload"]

#: the variable naming the payload file, set by the node
PAYLOAD_FILE_ENV = "HELIOS_PAYLOAD_FILE"
#: where a container runtime mounts the payload file inside the container
PAYLOAD_CONTAINER_PATH = "/run/helios/payload"


def materialise_payload(env: Mapping[str, str], directory: str | os.PathLike[str], *,
                        container: bool) -> dict[str, str]:
    """For the node: write a task's payload file and return the variables to add.

    `env` is the task's spec env; without `HELIOS_PAYLOAD` nothing is written and {} is
    returned. Otherwise the payload goes to `<directory>/payload` (in a 0700 directory,
    replaced atomically, so a restarted task sees the same file) and the answer is
    `{"HELIOS_PAYLOAD_FILE": path}`: the host path for the process runtime, or
    `PAYLOAD_CONTAINER_PATH` when `container` is true (the node then bind-mounts
    `<directory>/payload` there, read-only)."""
    if PAYLOAD_ENV not in env:
        return {}
    d = Path(directory)
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    target = d / "payload"
    tmp = d / f".payload.{os.getpid()}.tmp"
    # Inside a container the task may run as any user; on the host the 0700 directory
    # keeps the file private either way.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644 if container else 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(env[PAYLOAD_ENV].encode("utf-8"))
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, target)
    return {PAYLOAD_FILE_ENV: PAYLOAD_CONTAINER_PATH if container else str(target)}
