"""The web dashboard in a real headless Chromium (Debian's `chromium`, driven by
playwright without any downloaded browser) against a live `helios solo`: it shows the node
with capacity bars, the jobs, a job's tasks with state and health and its history, and
during a rollout the new version's tasks appear without a reload. Every request the page
makes goes to the server that served it. Screenshots are saved in the test's tmp dir."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.common import in_ci, unique_name
from tests.helios.http.support import Solo, get_json, request, solo_with_http
from tests.integration.procs import eventually

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture
def browser() -> Iterator[Any]:
    if shutil.which(CHROMIUM) is None:
        if in_ci():
            pytest.fail("chromium is required in CI (apt-get install chromium)")
        pytest.skip("chromium is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            b.close()


def service(name: str, version: str) -> dict[str, Any]:
    return {"name": name, "kind": "service", "command": ["sleep", "600"],
            "env": {"V": version}, "count": 2, "grace": "0s",
            "resources": {"cpus": 0.25, "memory": "32M"},
            "update": {"parallel": 1, "deadline": "60s"}}


def task_ids(solo: Solo, name: str, state: str = "running") -> set[str]:
    return {t["id"] for t in get_json(f"{solo.http}/v1/jobs/{name}")["tasks"]
            if t["state"] == state}


def shown_tasks(page: Any) -> dict[str, str]:
    return page.eval_on_selector_all(
        "#tasks tbody tr", "rows => Object.fromEntries(rows.map("
        "r => [r.dataset.task, r.dataset.state]))")


def test_the_dashboard_shows_the_cluster_and_a_rollout_live(browser: Any,
                                                           tmp_path: Path) -> None:
    with solo_with_http(tmp_path) as solo:
        name = unique_name("web")
        assert request("POST", f"{solo.http}/v1/jobs", service(name, "1")).status == 200
        v1 = eventually(lambda: (lambda ids: ids if len(ids) == 2 else None)(
            task_ids(solo, name)), 30, "v1 running", diagnostics=solo.proc.tail)

        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        requested: list[str] = []
        page.on("request", lambda r: requested.append(r.url))
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{solo.http}/#job={name}")
        page.evaluate("window.__notReloaded = true")

        # the node, with its capacity used by the two tasks (0.5 of its CPUs)
        node = get_json(f"{solo.http}/v1/nodes")[0]
        card = page.locator(f'[data-node="{node["name"]}"]')
        card.wait_for(timeout=15000)
        assert "up" in card.inner_text()
        assert card.locator(".bar").count() == 2
        cpu = card.locator(".bar").first.get_attribute("aria-valuenow")
        used = 100 * (node["cpus"] - node["cpus_free"]) / node["cpus"]
        assert abs(float(cpu or 0) - used) <= 1, (cpu, used)
        # the job in the list, its tasks with state and health, its history
        page.locator(f'#jobs tr[data-job="{name}"]').wait_for(timeout=15000)
        page.wait_for_function(
            "ids => ids.every(id => document.querySelector(`#tasks tr[data-task='${id}']`))",
            arg=sorted(v1), timeout=15000)
        assert set(shown_tasks(page).values()) == {"running"}
        assert page.locator("#history tbody tr").count() > 0
        assert "submitted" in page.locator("#history").inner_text()
        assert page.locator("#events li").count() > 0
        page.screenshot(path=str(tmp_path / "dashboard-v1.png"), full_page=True)

        # roll out v2: the new tasks appear on the page, the old ones go, no reload
        assert request("POST", f"{solo.http}/v1/jobs", service(name, "2")).status == 200
        page.wait_for_function(
            "old => [...document.querySelectorAll('#tasks tbody tr')]"
            ".some(r => !old.includes(r.dataset.task))", arg=sorted(v1), timeout=30000)
        page.screenshot(path=str(tmp_path / "dashboard-rolling.png"), full_page=True)
        v2 = eventually(lambda: (lambda ids: ids if len(ids) == 2 and not ids & v1 else None)(
            task_ids(solo, name)), 60, "v2 running", diagnostics=solo.proc.tail)
        page.wait_for_function(
            "ids => { const rows = [...document.querySelectorAll('#tasks tbody tr')]"
            ".filter(r => r.dataset.state === 'running').map(r => r.dataset.task);"
            " return rows.length === ids.length && ids.every(i => rows.includes(i)); }",
            arg=sorted(v2), timeout=30000)
        page.wait_for_function(
            "() => /rollout v2: complete/.test(document.getElementById('rollout').innerText)",
            timeout=30000)
        assert "rollout" in page.locator("#events").inner_text()
        assert page.evaluate("window.__notReloaded") is True
        page.screenshot(path=str(tmp_path / "dashboard-v2.png"), full_page=True)

        assert not errors, errors
        assert requested and all(u.startswith(solo.http + "/") for u in requested), \
            [u for u in requested if not u.startswith(solo.http + "/")]
