"""The sandbox is a package of its own: in a source checkout, out of the operator's image.

One distribution holds two top-level packages, ``agentmedic`` and ``agentmedic_sandbox``
(pyproject.toml). The image's build stage (Dockerfile) copies only what it names, so the
packages setuptools finds there are the ones its wheel carries: no emulator, no local
control plane. Where the sandbox is missing, ``agentmedic demo`` says in one line how to get
it.
"""

from __future__ import annotations

import contextlib
import io
import re
import shutil
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from setuptools import find_namespace_packages

from agentmedic.cli.main import main

ROOT = Path(__file__).resolve().parents[2]


def _find_config() -> dict[str, Any]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    found: dict[str, Any] = config["tool"]["setuptools"]["packages"]["find"]
    return found


def _packages(tree: Path) -> set[str]:
    """The packages setuptools' ``packages.find`` (namespaces on, its default) finds in tree."""
    find = _find_config()
    packages: set[str] = set()
    for where in find["where"]:
        packages.update(find_namespace_packages(where=str(tree / where), include=find["include"]))
    return packages


def _image_build_tree(tmp_path: Path) -> Path:
    """What the Dockerfile's build stage copies, laid out as it is in the image."""
    tree = tmp_path / "image"
    tree.mkdir()
    copies = re.findall(r"^COPY (?!--from)(.+)$", (ROOT / "Dockerfile").read_text(), re.M)
    assert copies, "the Dockerfile copies nothing from the checkout"
    for line in copies:
        *sources, target = line.split()
        for source in sources:
            dest = tree / target / Path(source).name if target.endswith("/") else tree / target
            if (ROOT / source).is_dir():
                shutil.copytree(ROOT / source, dest)
            else:
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(ROOT / source, dest)
    return tree


def test_a_source_checkout_installs_the_operator_and_the_sandbox() -> None:
    packages = _packages(ROOT)
    assert {"agentmedic", "agentmedic.cli", "agentmedic_sandbox"} <= packages
    assert "agentmedic_sandbox.kwok_stages" in packages


def test_the_operators_image_carries_no_sandbox(tmp_path: Path) -> None:
    packages = _packages(_image_build_tree(tmp_path))
    assert {"agentmedic", "agentmedic.cli", "agentmedic.operator", "agentmedic.api"} <= packages
    assert not {p for p in packages if p.split(".")[0] == "agentmedic_sandbox"}


def test_the_kwok_stages_ship_as_package_data() -> None:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = data["package-data"]["agentmedic_sandbox"]
    folder = ROOT / "src" / "agentmedic_sandbox"
    shipped = {p for pattern in patterns for p in folder.glob(pattern)}
    stages = set((folder / "kwok_stages").iterdir())
    assert stages
    assert stages <= shipped


def test_demo_without_the_sandbox_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in [m for m in sys.modules if m.split(".")[0] == "agentmedic_sandbox"]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "agentmedic_sandbox", None)  # type: ignore[arg-type]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["demo", "--no-ui"])
    assert code == 2
    assert out.getvalue() == ""
    lines = err.getvalue().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("agentmedic demo: the sandbox is not installed")
    assert "pip install -e '.[sandbox]'" in lines[0]
    assert "Traceback" not in err.getvalue()
