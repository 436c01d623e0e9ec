"""The configuration reference page (``docs/configuration.md``), generated from the parameter files.

Every parameter of ``conf/base/parameters_*.yml`` becomes a table row with its default, exactly as
written in the file, and the file's own comments as its description; full-line comments become the
paragraphs between the tables. The test suite regenerates the page and compares, so the reference
cannot drift from the files: after changing a parameter file run

    python -m gnn_recsys.config_reference > docs/configuration.md
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

#: Mappings whose keys are data, not parameters (an event table's type values): an environment may add keys.
OPEN_MAPPINGS = ("event_types.",)
_KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_][\w.-]*):(?P<rest>.*)$")
HEADER = """# Configuration reference

Every parameter of `conf/base/parameters_*.yml` with its default, generated from the files
(`python -m gnn_recsys.config_reference > docs/configuration.md`; a test fails when this page and the
files disagree). Override any of them for one run with `--params`, dotted for nested keys:

```bash
kedro run --params "split.test_days=3,covisitation.top_k=30"
```

or for good in an environment of your own (`conf/<env>/parameters.yml`, `kedro run --env <env>`).
"""


@dataclass
class Row:
    key: str
    default: str
    notes: list[str] = field(default_factory=list)


@dataclass
class Block:
    """A paragraph of full-line comments, then the rows that follow it."""

    text: list[str] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)


def _split_comment(rest: str) -> tuple[str, str]:
    """``value  # comment`` -> (value, comment); a ``#`` inside quotes is not a comment."""
    quote = None
    for i, char in enumerate(rest):
        if char in "'\"" and quote in (None, char):
            quote = None if quote else char
        elif char == "#" and quote is None and (i == 0 or rest[i - 1] in " \t"):
            return rest[:i].strip(), rest[i + 1 :].strip()
    return rest.strip(), ""


def parse(path: Path) -> list[Block]:
    """Blocks of ``path``: comments and dotted keys with their defaults as written."""
    blocks = [Block()]
    stack: list[tuple[int, str]] = []  # (indent, key) of the open mappings
    last_row: Row | None = None
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("# ----"):
            last_row = None if not stripped else last_row
            continue
        if stripped.startswith("#"):
            text = stripped.lstrip("#").strip()
            if line.startswith(" ") and last_row is not None:  # an indented comment continues a row's
                last_row.notes.append(text)
            else:
                if blocks[-1].rows:
                    blocks.append(Block())
                blocks[-1].text.append(text)
                last_row = None
            continue
        match = _KEY_LINE.match(line)
        if match is None:
            raise ValueError(f"{path}:{number}: not a 'key: value' line the reference understands: {line!r}")
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        key = ".".join([*(k for _, k in stack), match["key"]])
        value, comment = _split_comment(match["rest"])
        if value:
            last_row = Row(key, value, [comment] if comment else [])
            blocks[-1].rows.append(last_row)
        else:  # a nested mapping opens; its comment describes it
            stack.append((indent, match["key"]))
            last_row = Row(key, "", [comment] if comment else [])
            if comment:
                blocks[-1].rows.append(last_row)
    return [block for block in blocks if block.text or block.rows]


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key, item in value.items():
            out |= _flatten(item, f"{prefix}{key}.")
        return out
    return {prefix.rstrip("."): value}


def check(path: Path, blocks: list[Block]) -> None:
    """The parsed rows hold every parameter of the file, each default equal to what YAML loads."""
    nested = yaml.safe_load(path.read_text()) or {}
    rows = [row for block in blocks for row in block.rows if row.default]
    for row in rows:
        value: Any = nested
        for part in row.key.split("."):
            if not isinstance(value, dict) or part not in value:
                raise ValueError(f"{path}: {row.key} is not a parameter of the file")
            value = value[part]
        if yaml.safe_load(row.default) != value:
            raise ValueError(f"{path}: {row.key} parsed as {row.default!r}, YAML loads {value!r}")
    keys = {row.key for row in rows}
    missing = [k for k in _flatten(nested) if not any(k == r or k.startswith(f"{r}.") for r in keys)]
    if missing:
        raise ValueError(f"{path}: parameters missing from the reference: {missing}")


def _text(text: str) -> str:
    """Comment text as Markdown text: ``<train|test>`` is not an HTML tag."""
    return text.replace("<", "&lt;").replace(">", "&gt;")


def _cell(text: str) -> str:
    return _text(text).replace("|", "\\|")


def render(conf_dir: Path) -> str:
    """The whole reference page for ``conf_dir`` (``conf/``)."""
    parts = [HEADER]
    for path in sorted((conf_dir / "base").glob("parameters*.yml")):
        blocks = parse(path)
        check(path, blocks)
        parts.append(f"## `{path.name}`\n")
        for block in blocks:
            if block.text:
                parts.append(
                    "<br>\n".join(_text(line) for line in block.text) + "\n"
                )  # the file's line breaks
            if block.rows:
                lines = ["| parameter | default | notes |", "|---|---|---|"]
                for row in block.rows:
                    default = f"`{row.default}`" if row.default else "*(group)*"
                    lines.append(f"| `{row.key}` | {default} | {_cell(' '.join(row.notes))} |")
                parts.append("\n".join(lines) + "\n")
    base_keys = {
        key
        for path in (conf_dir / "base").glob("parameters*.yml")
        for key in _flatten(yaml.safe_load(path.read_text()) or {})
    }
    for env in sorted(p for p in conf_dir.iterdir() if p.is_dir() and p.name not in ("base", "local")):
        for path in sorted(env.glob("parameters*.yml")):
            overrides = _flatten(yaml.safe_load(path.read_text()) or {})
            unknown = [k for k in overrides if k not in base_keys and not k.startswith(OPEN_MAPPINGS)]
            if unknown:
                raise ValueError(f"{path}: overrides of parameters that conf/base does not define: {unknown}")
            parts.append(f"## `--env {env.name}` (`conf/{env.name}/{path.name}`)\n")
            parts.append("Overrides of the defaults above:\n")
            lines = ["| parameter | value |", "|---|---|"]
            lines += [
                f"| `{k}` | `{yaml.safe_dump(v, default_flow_style=True).strip().removesuffix('...').strip()}` |"
                for k, v in overrides.items()
            ]
            parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


def main() -> None:
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path.cwd()
    sys.stdout.write(render(root / "conf"))


if __name__ == "__main__":
    main()
