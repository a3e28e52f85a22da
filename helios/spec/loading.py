"""Reading a job file: YAML or JSON text (JSON is YAML) to validated data, with keys
given twice refused (YAML would keep the last one silently)."""

from __future__ import annotations

from collections.abc import Mapping

import yaml

from helios.spec.errors import Problem, SpecError
from helios.spec.model import JobSpec, validate
from helios.spec.validation import join_path, typename

__all__ = ["load_file", "loads"]


def _duplicates(node: yaml.Node | None, path: str = "") -> list[Problem]:
    """Keys given twice in one mapping. YAML keeps the last one silently, which hides a
    mistake (two ``count:`` lines) that people then cannot find."""
    out: list[Problem] = []
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            sub = join_path(path, str(key)) if key is not None else path
            if key is not None and key in seen:
                out.append(Problem(sub, f"given twice (again at line "
                                        f"{key_node.start_mark.line + 1}); remove one"))
            if key is not None:
                seen.add(key)
            out.extend(_duplicates(value_node, sub))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out.extend(_duplicates(item, f"{path}[{i}]"))
    return out


def loads(text: str, source: str = "job file") -> JobSpec:
    """Parse YAML or JSON text and validate it."""
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        duplicates = _duplicates(root)
        data = loader.construct_document(root) if root is not None else None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise SpecError([Problem("", f"{source} is not valid YAML/JSON{where}: {problem}")]) \
            from None
    finally:
        loader.dispose()
    if not isinstance(data, Mapping):
        raise SpecError([Problem("", f"{source} must be a mapping of fields, "
                                     f"got {typename(data)}")])
    if duplicates:
        try:
            validate(data)
        except SpecError as e:
            raise SpecError(duplicates + e.problems) from None
        raise SpecError(duplicates)
    return validate(data)


def load_file(path: str) -> JobSpec:
    """Read and validate a job file (YAML or JSON). The one helper here that touches disk,
    for the CLI's boundary."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise SpecError([Problem("", f"cannot read {path}: {e.strerror}")]) from None
    return loads(text, source=path)
