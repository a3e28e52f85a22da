"""Old name of `helios.conductor.snapshot`, kept only while helios/http/app.py (another
branch's territory) still imports `load_snapshot` from here; delete it once that import
reads `helios.conductor.snapshot`."""

from helios.conductor.snapshot import load_snapshot

__all__ = ["load_snapshot"]
