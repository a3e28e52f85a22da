"""Where a node publishes, and the names and instance ids kept in state directories."""

from pathlib import Path

from helios.node.daemon import publish_host
from helios.node.identity import instance_id
from helios.solo import solo_node_name


def test_publish_host_prefers_publish_then_advertise_then_a_specific_listen_host():
    assert publish_host("10.0.0.9", "10.0.0.5", "0.0.0.0:7101") == "10.0.0.9"
    assert publish_host(None, "10.0.0.5", "0.0.0.0:7101") == "10.0.0.5"
    assert publish_host(None, "10.0.0.5:7101", None) == "10.0.0.5"
    assert publish_host(None, None, "127.0.0.2:7101") == "127.0.0.2"
    assert publish_host(None, None, "0.0.0.0:7101") == "127.0.0.1"
    assert publish_host(None, None, "[::1]:7101") == "::1"
    assert publish_host(None, None, None) == "127.0.0.1"


def test_solo_name_is_made_once_per_state_directory(tmp_path: Path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    first = solo_node_name(a)
    assert solo_node_name(a) == first  # kept across restarts
    assert solo_node_name(b) != first  # another state directory, another node
    assert (a / "node-name").read_text().strip() == first


def test_instance_id_is_kept(tmp_path: Path):
    other = tmp_path / "other"
    other.mkdir()
    assert instance_id(tmp_path) == instance_id(tmp_path) != instance_id(other)
