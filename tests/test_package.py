"""The package's shape: imports flow one way, Hydra's private API is touched in one place, and the
configs the app needs are inside the package (so a wheel has them)."""

from __future__ import annotations

import ast
from pathlib import Path

import alexnet

PACKAGE = Path(alexnet.__file__).parent


def imports() -> dict[str, set[str]]:
    """Each module of the package and the package's modules it imports."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(("alexnet", *path.relative_to(PACKAGE).with_suffix("").parts))
        modules[name.removesuffix(".__init__")] = path
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("alexnet"):
                targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def test_no_import_circle_in_the_package():
    graph = imports()
    circles = []

    def visit(name: str, path: list[str], done: set[str]) -> None:
        for target in sorted(graph[name]):
            if target in path:
                circles.append(path[path.index(target):] + [target])
            elif target not in done:
                done.add(target)
                visit(target, [*path, target], done)

    for name in graph:
        visit(name, [name], {name})
    assert not circles, circles


def test_hydras_private_api_is_used_in_one_adapter_module_only():
    users = sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                   if "hydra._internal" in p.read_text())
    assert users == ["hydra_internals.py"]


def test_the_run_record_does_not_depend_on_the_analysis_of_finished_runs():
    graph = imports()
    for name in graph:
        if name.startswith(("alexnet.run", "alexnet.tracking")):
            assert not {t for t in graph[name] if t.startswith("alexnet.results")}, name


def test_the_design_cards_layout_holds_at_the_top():
    top = {p.name for p in PACKAGE.parent.iterdir()}
    assert {"pyproject.toml", "conf", "alexnet", "sweeps", "tests", "README.md"} <= top
    assert (PACKAGE.parent / "conf" / "config.yaml").is_file()
    assert {p.stem for p in (PACKAGE.parent / "sweeps").glob("*.yaml")} >= {"notebook", "notebook_cpu"}
    assert not (PACKAGE / "conf").exists()  # one copy of each file
