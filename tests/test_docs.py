"""The docs site builds strictly, the configuration reference matches the parameter files, and the
data-flow page names every catalog dataset."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gnn_recsys.config_reference import parse, render

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def test_configuration_reference_is_generated_from_the_parameter_files() -> None:
    page = (PROJECT_ROOT / "docs" / "configuration.md").read_text()
    assert page == render(PROJECT_ROOT / "conf"), (
        "docs/configuration.md is out of date: python -m gnn_recsys.config_reference > docs/configuration.md"
    )


def test_configuration_reference_lists_every_parameter_with_its_default(tmp_path: Path) -> None:
    """Against a file written here: nested keys, flow values, comments, a key missing from the page."""
    conf = tmp_path / "conf"
    (conf / "base").mkdir(parents=True)
    (conf / "base" / "parameters_x.yml").write_text(
        "# Section text.\n"
        "top: 3            # a top-level value\n"
        "group:            # a group\n"
        "  inner: [1, 2]   # a list | with a pipe\n"
        "  deeper:\n"
        "    leaf: null\n"
        "                  # continues the note of leaf\n"
        "  weights: {a: 1.0, b: 2.0}\n"
    )
    page = render(conf)
    assert "Section text." in page
    assert "| `top` | `3` | a top-level value |" in page
    assert "| `group.inner` | `[1, 2]` | a list \\| with a pipe |" in page
    assert "| `group.deeper.leaf` | `null` | continues the note of leaf |" in page
    assert "| `group.weights` | `{a: 1.0, b: 2.0}` |" in page
    keys = [row.key for block in parse(conf / "base" / "parameters_x.yml") for row in block.rows]
    assert keys == ["top", "group", "group.inner", "group.deeper.leaf", "group.weights"]

    (conf / "env").mkdir()
    (conf / "env" / "parameters.yml").write_text("group:\n  inner: [3]\n  deeper: {leaf: 1}\n")
    assert "| `group.deeper.leaf` | `1` |" in render(conf)
    (conf / "env" / "parameters.yml").write_text("group:\n  innr: [3]\n")  # a stale or misspelt key
    with pytest.raises(ValueError, match=r"env/parameters.yml: overrides .* \['group.innr'\]"):
        render(conf)
    (conf / "env" / "parameters.yml").unlink()

    (conf / "base" / "parameters_x.yml").write_text("a: 1\nb: [1,\n  2]\n")  # YAML this parser cannot read
    with pytest.raises(ValueError, match="parameters_x.yml:3"):
        render(conf)


def test_data_flow_page_names_every_catalog_dataset() -> None:
    catalog = yaml.safe_load((PROJECT_ROOT / "conf" / "base" / "catalog.yml").read_text())
    page = (PROJECT_ROOT / "docs" / "data_flow.md").read_text()
    for name in catalog:
        if not name.startswith("_"):
            assert f"`{name.replace('{model}', '<model>')}`" in page, (
                f"docs/data_flow.md does not name {name}"
            )


@pytest.mark.slow
def test_mkdocs_build_strict(tmp_path: Path) -> None:
    site = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=PROJECT_ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (site / "index.html").exists()
    for page in (
        "configuration",
        "data_flow",
        "data",
        "tools",
        "model",
        "architecture",
        "protocol",
        "scaling",
    ):
        assert (site / page / "index.html").exists(), page
    assert (site / "images" / "kedro_viz.png").exists()
    # the configuration reference renders as tables, not as raw Markdown
    html = (site / "configuration" / "index.html").read_text()
    assert "<td><code>split.test_days</code></td>" in html
