"""Writing a stage pin (``stages: {prod: 3}``) into a model spec: the only edit mlops makes to a spec.

The edit is made in the text, not by dumping YAML again, so comments, order and formatting stay as
the team wrote them and the diff of a promotion is one line. The result is parsed again and must
say exactly what was asked, or nothing is written.
"""

from __future__ import annotations

import re
from pathlib import Path

from mlops.errors import RegistryError
from mlops.spec.yamlpos import KEY_MARK, load_yaml

_INT = re.compile(r"[0-9]+")


def with_pin(text: str, stage: str, version: int, where: str = "model spec") -> str:
    """``text`` (a model spec) with ``stages.<stage>`` set to ``version``."""
    doc = load_yaml(text.encode())
    data = doc.data if isinstance(doc.data, dict) else {}
    stages = data.get("stages")
    lines = text.splitlines(keepends=True)
    if isinstance(stages, dict) and stage in stages:
        line, col = doc.positions[("stages", stage)]
        row = lines[line - 1]
        m = _INT.match(row, col - 1)
        if m is None:
            raise RegistryError(f"{where}: stages.{stage} is not a plain number; edit it by hand")
        lines[line - 1] = row[:m.start()] + str(version) + row[m.end():]
    elif isinstance(stages, dict):
        line, col = doc.positions[("stages",)]
        row = lines[line - 1]
        if row[col - 1:col] == "{":  # flow style: stages: {dev: 1}
            close = row.index("}", col - 1)
            sep = ", " if row[col:close].strip() else ""
            lines[line - 1] = f"{row[:close].rstrip()}{sep}{stage}: {version}{row[close:]}"
        else:  # block style: one key per line, indented like the others
            keys = [doc.positions[("stages", KEY_MARK, k)] for k in stages]
            last_line = max(doc.positions[("stages", k)][0] for k in stages)
            indent = " " * (keys[0][1] - 1)
            lines.insert(last_line, f"{indent}{stage}: {version}\n")
    elif "stages" in data:
        raise RegistryError(f"{where}: stages is not a mapping; edit it by hand")
    else:
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        lines.append(f"stages:\n  {stage}: {version}\n")
    new = "".join(lines)
    check = load_yaml(new.encode()).data
    expected = {**(stages if isinstance(stages, dict) else {}), stage: version}
    if not isinstance(check, dict) or check.get("stages") != expected or \
            {k: v for k, v in check.items() if k != "stages"} != {k: v for k, v in data.items() if k != "stages"}:
        raise RegistryError(f"{where}: could not set stages.{stage} = {version} without changing anything else; "
                            "edit it by hand")
    return new


def write_pin(root: Path, spec_file: str, stage: str, version: int) -> bool:
    """Set the pin in the model spec file ``spec_file`` of the working tree; False when it already says so."""
    from mlops import paths

    path = paths.resolve_inside(root, spec_file)
    text = path.read_text(encoding="utf-8")
    new = with_pin(text, stage, version, spec_file)
    if new == text:
        return False
    tmp = path.with_name(f".{path.name}.mlops-pin")
    tmp.write_text(new, encoding="utf-8")
    tmp.replace(path)
    return True
