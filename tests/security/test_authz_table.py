"""The authorization table, table-first: every (subject, message kind, actor, handler)
has an expected decision written here by hand, the policy must give exactly that, and
docs/security.md must show the same table."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

import actors
from helios.security.authz import TABLE, HeliosPolicy, Subject, decide

from .conftest import PKI

DOCS = Path(__file__).resolve().parents[2] / "docs" / "security.md"
SUBJECTS = ("conductor", "node", "reader", "operator", "management", "anonymous")

READ = "conductor reader operator management"
WRITE = "conductor operator management"
MANAGE = "management"
#: written by hand from the table in docs/security.md, not derived from the code
EXPECTED: dict[str, str] = {
    "conductor.task_events": "node",
    "conductor.job_ls": READ, "conductor.job_status": READ, "conductor.job_history": READ,
    "conductor.job_logs": READ, "conductor.nodes": READ, "conductor.endpoints": READ,
    "conductor.leader": READ + " node", "conductor.events": READ, "conductor.metrics": READ,
    "conductor.job_plan": READ, "conductor.job_versions": READ,
    "conductor.job_inspect": READ, "conductor.node_drain_status": READ,
    "conductor.job_scale": WRITE, "conductor.job_revert": WRITE,
    "conductor.job_run": WRITE, "conductor.job_stop": WRITE, "conductor.job_rm": WRITE,
    "conductor.job_dispatch": WRITE, "conductor.node_rm": WRITE,
    "conductor.node_drain": WRITE, "conductor.node_eligibility": WRITE,
    "conductor.rebalance": WRITE, "conductor.secret_set": WRITE,
    "conductor.secret_ls": WRITE, "conductor.secret_rm": WRITE,
    "conductor.secret_rewrap": MANAGE,
    "conductor.acl_bootstrap": "anonymous reader operator management",
    "conductor.acl_token_create": MANAGE, "conductor.acl_token_ls": MANAGE,
    "conductor.acl_token_rm": MANAGE, "conductor.audit": MANAGE,
    "node.assign": "conductor", "node.statuses": "conductor", "node.logs": "conductor",
    "node.info": "conductor", "node.ping": "conductor",
}


def _cases() -> list[tuple[str, str, bool]]:
    return [(row, who, who in EXPECTED[row].split()) for row in EXPECTED for who in SUBJECTS]


@pytest.mark.parametrize(("row", "who", "allowed"), _cases())
@pytest.mark.parametrize("kind", ["tell", "ask"])
def test_every_subject_and_handler(row: str, who: str, allowed: bool, kind: str) -> None:
    actor, _, method = row.partition(".")
    why = decide(Subject((who,), "x"), kind, actor, method)
    assert (why is None) == allowed, why
    if not allowed:
        assert "needs" in why or "no token" in why  # says what would allow it


def test_the_code_has_no_row_the_expectations_lack() -> None:
    assert {f"{a}.{h}" for a, h in TABLE} == set(EXPECTED)


def test_the_docs_show_the_same_table() -> None:
    rows = re.findall(r"^\| `(\w+\.\w+)` \|(.*)\|$", DOCS.read_text(), re.M)
    assert rows, "no table in docs/security.md"
    documented = {}
    for name, cells in rows:
        marks = [c.strip() for c in cells.split("|")]
        documented[name] = " ".join(sorted(s for s, m in zip(SUBJECTS, marks, strict=True)
                                           if m == "yes"))
    assert documented == {k: " ".join(sorted(v.split())) for k, v in EXPECTED.items()}


@pytest.mark.parametrize("kind", ["stop", "kill", "monitor"])
@pytest.mark.parametrize("who", SUBJECTS)
@pytest.mark.parametrize("target", ["conductor", "node", "conductor-sup", "task.web-1"])
def test_system_messages_are_allowed_to_no_one(kind: str, who: str, target: str) -> None:
    assert decide(Subject((who,), "x"), kind, target, "") is not None


@pytest.mark.parametrize("who", SUBJECTS)
@pytest.mark.parametrize("target", ["conductor-sup", "conductor-core", "node-sup",
                                    "task.web-1", "task-sup.web-1", "cron"])
def test_internal_actors_are_unreachable(who: str, target: str) -> None:
    for kind in ("tell", "ask", "lookup"):
        why = decide(Subject((who,), "x"), kind, target, "job_ls")
        assert why is not None and "internal" in why


def test_lookup_follows_the_rows() -> None:
    assert decide(Subject(("node",), "n1"), "lookup", "conductor", "") is None
    assert decide(Subject(("reader",), "r"), "lookup", "node", "") is not None
    assert decide(Subject(("anonymous",), ""), "lookup", "conductor", "") is None


def test_an_unknown_handler_and_an_invalid_token_are_refused() -> None:
    assert "not in the authorization table" in decide(
        Subject(("management",), "m"), "ask", "conductor", "format_disks")
    why = decide(Subject(("invalid",), token="?"), "ask", "conductor", "job_ls")
    assert why is not None and "not valid" in why


def peer(role: str | None, name: str = "p", credential: str = "") -> actors.PeerInfo:
    return actors.PeerInfo("10.0.0.9:1234", name, None, role=role, credential=credential)


def test_who_a_peer_is() -> None:
    tokens = {"s-ops": ("ops", "operator")}
    state = {"enabled": False}
    policy = HeliosPolicy(tls=True, resolve=tokens.get,
                          acl_enabled=lambda: state["enabled"])
    assert policy.subject(peer("node", "n1")).roles == ("node",)
    assert policy.subject(peer("conductor", "c1")).roles == ("conductor",)
    assert policy.subject(peer("cli", "alice")).roles == ("management",)  # ACLs off
    state["enabled"] = True
    assert policy.subject(peer("cli", "alice")).roles == ("anonymous",)
    assert policy.subject(peer("cli", "alice", "s-ops")).roles == ("operator",)
    assert policy.subject(peer("cli", "alice", "s-ops")).token == "ops"
    assert policy.subject(peer("cli", "alice", "forged")).roles == ("invalid",)
    # without TLS nothing tells a daemon from a person without a token
    plain = HeliosPolicy(tls=False, resolve=tokens.get, acl_enabled=lambda: True)
    assert plain.subject(peer(None)).roles == ("daemon", "anonymous")
    assert plain.authorize(peer(None), "ask", "node", "assign") is None
    assert plain.authorize(peer(None), "ask", "conductor", "job_run") is not None
    # a conductor that has not read the ACL state yet refuses people, and says why
    loading = HeliosPolicy(tls=True, resolve=tokens.get, acl_enabled=lambda: None)
    assert "not read the ACL state" in loading.authorize(peer("cli"), "ask", "conductor",
                                                         "job_ls")


class FakeConductor(actors.Actor):
    def __init__(self) -> None:
        self.reports: list[str] = []

    @actors.handler
    async def task_events(self, node: str, events: list[Any]) -> int:
        self.reports.append(node)
        return len(events)


async def test_node_restriction_a_node_reports_only_for_itself(pki: PKI) -> None:
    """Through the actor layer's gate: node n1's certificate reports for n1, never for
    n2, and the refusal is audited with what it was about."""
    audited: list[tuple[str, str, bool, str]] = []
    policy = HeliosPolicy(tls=True, audit=lambda s, a, t, ok, why: audited.append(
        (str(s), a, ok, t)))
    async with actors.open_system("c", listen="127.0.0.1:0", policy=policy,
                                  tls=pki.config("conductor", "c1")) as server, \
            actors.open_system("n1", tls=pki.config("node", "n1")) as n1:
        await server.spawn(FakeConductor, name="conductor")
        ref = n1.ref(f"{server.url}/conductor")
        assert await ref.ask("task_events", "n1", [{"id": "t"}]) == 1
        with pytest.raises(actors.Forbidden, match="only for itself"):
            await ref.ask("task_events", "n2", [{"id": "t"}])
        with pytest.raises(actors.Forbidden, match="only for itself"):
            await ref.ask("task_events", node="n2", events=[])
        # and a node is no conductor: it cannot give another node assignments
        await server.spawn(FakeConductor, name="node")
        with pytest.raises(actors.Forbidden, match="needs a conductor certificate"):
            await n1.ref(f"{server.url}/node").ask("assign", 1, 1, [])
        actor = server._registry["conductor"].actor
        assert actor.reports == ["n1"]
    refusals = [a for a in audited if not a[2]]
    assert refusals[0][1:] == ("conductor.task_events", False, "n2")
    assert refusals[0][0].startswith("node:n1")


def test_every_handler_of_the_public_actors_has_a_row() -> None:
    """A handler added without a row is refused to everyone: the table must grow with
    the protocol (this caught job_plan ... job_revert and node_drain_status once)."""
    from helios.conductor.front import ConductorActor
    from helios.node.node import NodeActor

    for actor, cls in (("conductor", ConductorActor), ("node", NodeActor)):
        missing = sorted(h for h in cls._handlers if (actor, h) not in TABLE)
        assert not missing, f"{actor} handlers without a row in the table: {missing}"
