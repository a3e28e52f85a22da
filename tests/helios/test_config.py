"""The one parser of ZooKeeper host strings and of `key=value` labels (`helios.config`),
and `python -m helios.node` taking the flags of `helios node` (one definition)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from helios.config import parse_labels, split_zk, zk_store_url

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("text", "hosts", "root"), [
    ("127.0.0.1:2181", "127.0.0.1:2181", "/helios"),
    ("h1:2181,h2:2181/prod", "h1:2181,h2:2181", "/prod"),
    ("h1:2181/prod/", "h1:2181", "/prod"),
    ("h1:2181/", "h1:2181", "/helios"),
    ("zk://h1:2181,h2:2181/a/b", "h1:2181,h2:2181", "/a/b"),
    ("zk://h1:2181", "h1:2181", "/helios"),
])
def test_zookeeper_host_strings(text: str, hosts: str, root: str) -> None:
    assert split_zk(text) == (hosts, root)
    assert zk_store_url(text) == f"zk://{hosts}{root}"


def test_a_store_url_is_kept() -> None:
    assert zk_store_url("sqlite:///var/lib/helios.db") == "sqlite:///var/lib/helios.db"
    assert split_zk("h:2181", default_root="/other") == ("h:2181", "/other")


def test_labels() -> None:
    assert parse_labels(["zone=a", "disk=ssd", "empty=", "eq=a=b"]) == \
        {"zone": "a", "disk": "ssd", "empty": "", "eq": "a=b"}
    assert parse_labels(None) == {}
    for bad in ("zone", "=a"):
        with pytest.raises(ValueError, match=f"--container-label '{bad}': expected key=value"):
            parse_labels([bad], "--container-label")


def test_python_m_helios_node_takes_the_flags_of_helios_node(tmp_path: Path) -> None:
    """Flags the old argparse copy did not know (`--allow-cap`) are taken, and a bad one is
    refused as `helios node` refuses it: one line, no traceback."""
    help_text = subprocess.run([sys.executable, "-m", "helios.node", "--help"], cwd=REPO,
                               capture_output=True, text=True, timeout=60).stdout
    assert "--allow-cap" in help_text and "--publish-address" in help_text
    r = subprocess.run([sys.executable, "-m", "helios.node", "--zk", "127.0.0.1:1",
                        "--name", "n1", "--state-dir", str(tmp_path), "--label", "zone"],
                       cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert r.stderr == "error: --label 'zone': expected key=value\n"
