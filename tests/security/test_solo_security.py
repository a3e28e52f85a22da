"""Against a real `helios solo` with mutual TLS: ACL tokens, refusals in one line, the
audit log, HTTP bearer tokens, and TLS refusals that leave the daemon serving.

Where the defence can be switched off, the attack is shown working first: before `helios
acl bootstrap` (ACLs off) a cli certificate without a token runs a job."""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import trio

import actors
from tests.fixtures.common import free_port
from tests.integration.procs import HELIOS, eventually

from .conftest import PKI
from .procs import clean_env, job_file, one_line_error, secure_solo

pytestmark = pytest.mark.slow


def test_a_cli_certificate_without_a_token_cannot_run_a_job(tmp_path: Path, pki: PKI) -> None:
    with secure_solo(tmp_path, pki) as solo:
        # the attack, while ACLs are off: any cli certificate runs anything
        assert solo.cli("job", "run", str(job_file(tmp_path, "before"))).returncode == 0
        solo.bootstrap()
        line = one_line_error(solo.cli("job", "run", str(job_file(tmp_path, "after"))))
        assert "forbidden" in line and "no token" in line and "operator" in line, line
        assert "--token-file" in line  # what would allow it
        assert one_line_error(solo.cli("job", "ls"))  # reading too, once ACLs are on
        # with an operator token it runs
        r = solo.cli("job", "run", str(job_file(tmp_path, "after")), token="ops")
        assert r.returncode == 0, r.stderr
        names = [j["name"] for j in solo.json("job", "ls", token="ro")]
        assert names == ["after", "before"]


def test_a_reader_token_cannot_stop_a_job_and_the_audit_log_says_who(
        tmp_path: Path, pki: PKI) -> None:
    with secure_solo(tmp_path, pki) as solo:
        solo.bootstrap()
        assert solo.cli("job", "run", str(job_file(tmp_path, "web")), token="ops") \
            .returncode == 0
        line = one_line_error(solo.cli("job", "stop", "web", token="ro"))
        assert "forbidden" in line and "job_stop" in line
        assert "needs a token with role operator or management" in line
        assert solo.json("job", "status", "web", token="ro")["name"] == "web"
        assert solo.cli("job", "stop", "web", token="ops").returncode == 0
        # a reader cannot read the audit log, nor manage tokens
        assert "forbidden" in one_line_error(solo.cli("audit", token="ro"))
        assert "forbidden" in one_line_error(solo.cli("acl", "token", "ls", token="ops"))
        # the last management token stays
        assert "last management token" in one_line_error(
            solo.cli("acl", "token", "rm", "bootstrap", token="mgmt"))
        tokens = solo.json("acl", "token", "ls", token="mgmt")
        assert {t["name"]: t["role"] for t in tokens} == {
            "bootstrap": "management", "ops": "operator", "ro": "reader"}
        assert not any("hash" in t or "secret" in t for t in tokens)

        def audited() -> list[dict[str, Any]] | None:
            rows = solo.json("audit", "--since", "5m", token="mgmt")
            return rows if any(r["action"] == "conductor.acl_token_ls"
                               and not r["allowed"] for r in rows) else None

        rows = eventually(audited, 10, "the refusals in the audit log")
        by = {(r["who"], r["action"], r["allowed"]) for r in rows}
        assert ("ops", "conductor.job_run", True) in by
        assert ("ro", "conductor.job_stop", False) in by
        assert ("ops", "conductor.job_stop", True) in by
        assert ("ro", "conductor.audit", False) in by
        stop = next(r for r in rows if r["who"] == "ro" and r["action"] == "conductor.job_stop")
        assert stop["target"] == "web" and stop["role"] == "reader"
        assert "cli:alice" in stop["via"] and "operator" in stop["reason"]
        assert not any(solo.tokens[t] in json.dumps(rows) for t in solo.tokens)
        human = solo.cli("audit", token="mgmt")
        assert "REFUSED" in human.stdout and "ro (reader" in human.stdout


async def test_a_revoked_token_stops_working_within_a_second(tmp_path: Path,
                                                             pki: PKI) -> None:
    with secure_solo(tmp_path, pki) as solo:
        await trio.to_thread.run_sync(solo.bootstrap)
        async with actors.open_system("script", tls=pki.config("cli", "alice"),
                                      credential=solo.tokens["ro"]) as script:
            ref = script.ref(f"tcp://{solo.addr}/conductor")
            assert await ref.ask("job_ls") == []  # one connection, kept open
            r = await trio.to_thread.run_sync(
                lambda: solo.cli("acl", "token", "rm", "ro", token="mgmt"))
            revoked = time.monotonic()
            assert r.returncode == 0, r.stderr
            while True:
                try:
                    await ref.ask("job_ls")
                except actors.Forbidden as e:
                    assert "not valid" in str(e)
                    break
                assert time.monotonic() - revoked < 1.0, "the revoked token still works"
                await trio.sleep(0.01)
            assert time.monotonic() - revoked < 1.0
        # and from a fresh client too
        line = await trio.to_thread.run_sync(lambda: one_line_error(
            solo.cli("job", "ls", token="ro")))
        assert "forbidden" in line and "not valid" in line


def _http(url: str, pki: PKI, token: str | None = None, method: str = "GET",
          body: bytes | None = None) -> tuple[int, dict[str, Any]]:
    ctx = ssl.create_default_context(cafile=pki.ca)
    req = urllib.request.Request(url, data=body, method=method,
                                 headers={"Content-Type": "application/json",
                                          **({"Authorization": f"Bearer {token}"}
                                             if token else {})})
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def test_the_http_api_is_https_with_bearer_tokens(tmp_path: Path, pki: PKI) -> None:
    with secure_solo(tmp_path, pki) as solo:
        base = f"https://{solo.http}"
        assert _http(f"{base}/v1/jobs", pki)[0] == 200  # ACLs off
        solo.bootstrap()
        status, doc = _http(f"{base}/v1/jobs", pki)
        assert status == 401 and doc["error"].startswith("forbidden: ")
        status, doc = _http(f"{base}/v1/jobs", pki, token="not-a-token")
        assert status == 403 and "not valid" in doc["error"]
        assert _http(f"{base}/v1/jobs", pki, token=solo.tokens["ro"]) == (200, [])
        spec = json.dumps({"name": "api", "kind": "service", "command": ["sleep", "600"]})
        status, doc = _http(f"{base}/v1/jobs", pki, solo.tokens["ro"], "POST", spec.encode())
        assert status == 403 and "operator" in doc["error"]
        status, doc = _http(f"{base}/v1/jobs", pki, solo.tokens["ops"], "POST",
                            spec.encode())
        assert status == 200 and doc["name"] == "api"
        rows = eventually(lambda: [r for r in solo.json("audit", token="mgmt")
                                   if r["via"].startswith("http ")], 10, "http in audit")
        assert {(r["who"], r["action"], r["allowed"]) for r in rows} >= {
            ("ro", "conductor.job_run", False), ("ops", "conductor.job_run", True)}
        # a stream that follows events ends once its token is revoked
        import threading

        ctx = ssl.create_default_context(cafile=pki.ca)
        req = urllib.request.Request(f"{base}/v1/events?follow=true", headers={
            "Authorization": f"Bearer {solo.tokens['ro']}"})
        lines: list[bytes] = []
        resp = urllib.request.urlopen(req, context=ctx, timeout=60)
        reader = threading.Thread(target=lambda: lines.extend(resp), daemon=True)
        reader.start()
        eventually(lambda: lines, 10, "the stream's first events")
        assert solo.cli("acl", "token", "rm", "ro", token="mgmt").returncode == 0
        assert solo.cli("job", "stop", "api", token="ops").returncode == 0  # new events
        reader.join(10)
        assert not reader.is_alive(), "the stream outlived its token"
        resp.close()


def test_tls_refusals_are_one_line_and_the_daemon_keeps_serving(tmp_path: Path,
                                                                pki: PKI) -> None:
    with secure_solo(tmp_path, pki) as solo:
        foreign = pki.foreign_env("cli", "alice")
        attempts = {
            "plaintext": {},
            # a certificate of another CA (trusting ours, which is no secret)
            "another CA": {**foreign, "HELIOS_TLS_CA": pki.ca},
            "expired": pki.expired_env("cli", "alice"),
        }
        for label, identity in attempts.items():
            time.sleep(1.1)  # the daemon logs one refused handshake a second
            line = one_line_error(solo.cli("nodes", identity=identity))
            assert "cannot reach the conductor" in line or "TLS" in line, (label, line)
            if label == "plaintext":
                assert "does it require TLS" in line, line
            # the daemon is unaffected
            assert solo.cli("nodes", "--json").returncode == 0, label
        log = solo.proc.log.read_text()
        assert "TLS: the peer does not speak TLS" in log
        assert "TLS: the peer's certificate has expired" in log
        assert "TLS: the peer's certificate is not signed by the CA trusted here" in log


def test_a_node_certificate_for_another_name_or_role_is_refused_at_start(
        tmp_path: Path, pki: PKI) -> None:
    import subprocess

    r = subprocess.run([*HELIOS, "node", "--zk", "127.0.0.1:1", "--name", "n1",
                        "--state-dir", str(tmp_path / "n1")], capture_output=True, text=True,
                       timeout=60, env=clean_env(pki.env("node", "n2")))
    assert r.returncode == 2 and "names node 'n2'" in one_line_error(r)
    r = subprocess.run([*HELIOS, "solo", "--state-dir", str(tmp_path / "s"),
                        "--listen", f"127.0.0.1:{free_port()}"], capture_output=True,
                       text=True, timeout=60, env=clean_env(pki.env("cli", "alice")))
    assert r.returncode == 2 and "a conductor needs one made with" in one_line_error(r)


def test_a_short_cluster_secret_is_refused(tmp_path: Path) -> None:
    import subprocess

    r = subprocess.run([*HELIOS, "solo", "--state-dir", str(tmp_path / "s"),
                        "--listen", f"127.0.0.1:{free_port()}"], capture_output=True,
                       text=True, timeout=60,
                       env=clean_env({"HELIOS_CLUSTER_SECRET": "s3cret"}))
    assert r.returncode == 2 and "at least 16 characters" in one_line_error(r)


@pytest.mark.parametrize("command", ["solo", "conductor", "node"])
def test_no_plaintext_listener_beyond_loopback_without_insecure(
        tmp_path: Path, pki: PKI, command: str) -> None:
    import subprocess

    args = {"solo": ["solo", "--state-dir", str(tmp_path / "s")],
            "conductor": ["conductor", "--zk", "127.0.0.1:1"],
            "node": ["node", "--zk", "127.0.0.1:1", "--name", "n1",
                     "--state-dir", str(tmp_path / "n1")]}[command]
    listen = ["--listen", f"0.0.0.0:{free_port()}"]
    r = subprocess.run([*HELIOS, *args, *listen], capture_output=True, text=True,
                       timeout=60, env=clean_env())
    line = one_line_error(r)
    assert r.returncode == 2 and "without TLS" in line and "--insecure" in line
