"""The package's shape: imports flow one way, private APIs are touched in one adapter each, one
vocabulary for stopping, no launcher recognised by name, the design card's layout, and a wheel
that carries the configs and runs from an empty folder."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import zipfile
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


def test_one_stop_vocabulary_and_no_launcher_recognised_by_its_target_string():
    """Stop is the one exception that ends a run or the command on purpose: no other class of ours
    derives from BaseException alone, and none of our code matches a `_target_` string."""
    sources = {p: p.read_text() for p in [*PACKAGE.rglob("*.py"),
                                         *(PACKAGE.parent / "hydra_plugins").rglob("*.py")]}
    endings = []
    for path, text in sources.items():
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef) and any(
                    isinstance(b, ast.Name) and b.id == "BaseException" for b in node.bases):
                endings.append(f"{path.name}:{node.name}")
    assert endings == ["stop.py:Stop"]
    matching = [f"{p.name}: {line.strip()}" for p, text in sources.items()
                for line in text.splitlines()
                if "_target_" in line and (".endswith(" in line or ".startswith(" in line)]
    assert not matching  # (a launcher says what it can do: its class attributes are asked)


def test_private_apis_are_used_behind_one_adapter_each():
    """Hydra's private modules only in alexnet/hydra_internals.py; no `_orig_mod` (torch.compile's
    inner module) or submitit's private outcome reader anywhere."""
    for path in [*PACKAGE.rglob("*.py"), *(PACKAGE.parent / "hydra_plugins").rglob("*.py")]:
        text = path.read_text()
        assert "_orig_mod" not in text and "_get_outcome_and_result" not in text, path


def test_the_wheel_carries_the_configs_and_runs_from_an_empty_folder(cifar_root, tmp_path):
    built = tmp_path / "wheel"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(built), str(PACKAGE.parent)], check=True, capture_output=True)
    (wheel,) = built.glob("alexnet_sweeps-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"alexnet/conf/config.yaml", "alexnet/conf/model/alexnet_cifar.yaml",
            "alexnet/sweeps/notebook_cpu.yaml", "hydra_plugins/alexnet_sweeps/optuna_sweeper.py"
            } <= names
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                    str(site), str(wheel)], check=True, capture_output=True)
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site), "CUDA_VISIBLE_DEVICES": ""}

    def installed(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, *args], cwd=empty, env=env, capture_output=True,
                              text=True, timeout=300)

    where = installed("-c", "import alexnet, alexnet.conf; print(alexnet.__file__)")
    assert where.stdout.startswith(str(site)), where.stdout + where.stderr  # the wheel's copy
    shown = installed("-m", "alexnet.train", "-m", "sweep=notebook_cpu", "--cfg", "hydra")
    assert shown.returncode == 0, shown.stderr
    assert "experiment: alexnet1,alexnet2,alexnet3" in shown.stdout
    ran = installed("-m", "alexnet.train", "model=alexnet_cifar", "epochs=1", "progress=false",
                    f"data.root={cifar_root}", "data.download=false", "hydra.run.dir=run")
    assert ran.returncode == 0, ran.stderr
    assert (empty / "run" / "results.json").is_file() and (empty / "run" / "model.pt").is_file()
