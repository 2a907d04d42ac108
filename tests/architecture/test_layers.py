"""The layering of README "How it is built" holds: the import-linter contracts in pyproject.toml are kept
(the same check as `lint-imports` in CI), no module cycles hide behind imports inside functions, and the
README's dependency order is the contract's."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import llmroute
from tests.architecture.module_graph import cycles, import_graph

REPO = Path(__file__).resolve().parents[2]
PACKAGE = Path(llmroute.__file__).resolve().parent


def _lint_imports(src: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` with pyproject.toml's contracts on the package under ``src``, in a fresh process."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    code = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(no_cache=True, no_logo=True))"
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300, check=False)


def _copy_package(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    shutil.copytree(PACKAGE, src / "llmroute", ignore=shutil.ignore_patterns("__pycache__", "dashboard", "*.yaml"))
    return src


def test_the_import_contracts_are_kept(tmp_path: Path) -> None:
    out = _lint_imports(PACKAGE.parent, tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout


@pytest.mark.parametrize(
    "module, line, contract",
    [
        # serving and training are independent siblings: the service may not load routers through training
        ("serving/app.py", "from llmroute.training import registry", "Dependencies point one way"),
        # a lower layer importing a higher one, even inside a function
        ("router/policy.py", "def _f():\n    from llmroute.experiments import metrics", "Dependencies point one way"),
        ("data/schema.py", "import mlflow", "never import a web framework or MLflow"),
        ("providers/chat.py", "import fastapi", "Only serving imports the web framework"),
    ],
)
def test_a_broken_layer_is_caught(tmp_path: Path, module: str, line: str, contract: str) -> None:
    src = _copy_package(tmp_path)
    path = src / "llmroute" / module
    path.write_text(path.read_text() + "\n\n" + line + "\n")
    out = _lint_imports(src, tmp_path)
    assert out.returncode != 0, out.stdout
    assert f"{contract} BROKEN" in out.stdout, out.stdout


def test_no_module_cycles() -> None:
    """No two modules import each other, directly or through others, counting imports inside functions
    (a cycle hidden by a function-level import is still a cycle; TYPE_CHECKING imports do not count)."""
    assert cycles(import_graph(PACKAGE)) == []


def test_the_cycle_finder_sees_function_level_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.sub import b\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from pkg import c\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import d\n"
                              "def g():\n    from . import a\n")
    (pkg / "d.py").write_text("import pkg.c\n")
    graph = import_graph(pkg)
    assert graph["pkg.c"] == {"pkg.a"}  # the TYPE_CHECKING import of d is not an edge
    assert cycles(graph) == [["pkg.a", "pkg.c", "pkg.sub.b"]]


def _contract_order() -> str:
    """The layers contract as the README writes it: top to bottom joined by →, the CLI's modules as `cli`."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    (layers,) = [c["layers"] for c in config["contracts"] if c["id"] == "layers"]
    shown = []
    for layer in layers:
        sep = "|" if "|" in layer else ":"
        names = [n.strip() for n in layer.split(sep)]
        names = [n for n in names if not n.startswith("cli_")]
        shown.append(" | ".join(names))
    return " → ".join(shown)


def test_the_readme_shows_the_contracts_order() -> None:
    order = _contract_order()
    assert order.startswith("cli → serving | training | benchmarking → ")
    readme = (REPO / "README.md").read_text()
    section = readme.split("## How it is built", 1)[1].split("\n## ", 1)[0]
    assert f"`{order}`" in section, f"README 'How it is built' should show the contract's order: `{order}`"
    for layer in order.split(" → "):
        for name in layer.split(" | "):
            assert (PACKAGE / name).is_dir() or (PACKAGE / f"{name}.py").is_file(), name
            assert f"{name}/" in section or f"{name}.py" in section, f"README 'How it is built' does not list {name}"
