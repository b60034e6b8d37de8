"""Where configs come from: `conf/` and `sweeps/`, shipped as package data so the installed app finds
them from any folder; composes them outside Hydra as `alexnet.train` does; and what a choice needs
installed (Hydra would fail naming a config, not the package), for the command line and --help."""

from __future__ import annotations

import importlib.resources
import importlib.util
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from hydra import compose, initialize_config_module
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from hydra.core.object_type import ObjectType
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from alexnet import config_schema  # noqa: F401 - registers the schemas the configs start from

CONFIG_MODULE = "alexnet.conf"  # conf/: Hydra's primary config dir, as pkg://alexnet.conf
CONFIG_PATH = f"pkg://{CONFIG_MODULE}"
PRESETS_MODULE = "alexnet.sweeps"  # sweeps/: the `sweep` group's options
PACKAGE_HEADER = re.compile(r"^#\s*@package\s+(\S+)", re.MULTILINE)


def register_sweep_presets() -> list[str]:
    """Store `sweeps/*.yaml` as `sweep` group options (a search path would name the group `sweeps`)."""
    names = []
    for entry in sorted(importlib.resources.files(PRESETS_MODULE).iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".yaml"):
            continue
        text = entry.read_text()
        package = PACKAGE_HEADER.search(text)
        ConfigStore.instance().store(group="sweep", name=entry.name.removesuffix(".yaml"),
                                     node=OmegaConf.create(text),
                                     package=package.group(1) if package else None)
        names.append(entry.name.removesuffix(".yaml"))
    return names


register_sweep_presets()


def compose_config(*overrides: str, config_name: str = "config") -> DictConfig:
    """The composed config, without Hydra's own keys."""
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        return compose(config_name=config_name, overrides=list(overrides))


def config_label(hydra_config: DictConfig) -> str:
    """The run's sweep preset, else the config's name (an MLflow experiment's default name)."""
    return str(hydra_config.runtime.choices.get("sweep") or hydra_config.job.config_name)


def groups(*parents: str) -> str:
    """`group: option, option` a line for `parents` and their subgroups, as Hydra's --help lists."""
    loader = GlobalHydra.instance().config_loader()

    def below(group: str) -> list[str]:
        found = [group] if loader.get_group_options(group, ObjectType.CONFIG) else []
        for child in sorted(loader.get_group_options(group, ObjectType.GROUP)):
            found += below(f"{group}/{child}")
        return found

    def options(group: str) -> list[str]:  # (a leading _ marks a schema, not a choice)
        return sorted(o for o in loader.get_group_options(group) if not o.startswith("_"))

    return "\n".join(f"{group}: {', '.join(options(group))}" for parent in parents for group in below(parent))


def register() -> None:
    for name, resolver in (("alexnet_groups", groups), ("alexnet_extras", listing)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver)


@dataclass(frozen=True)
class Need:
    """A package by the module it must import as and the pip argument that brings it."""

    package: str  # its name for a person (pip's)
    module: str
    install: str

    @property
    def command(self) -> str:
        return f'pip install "{self.install}"' if "[" in self.install else f"pip install {self.install}"


SEARCH = Need("optuna", "optuna", "alexnet-sweeps[search]")
SUBMITIT = Need("hydra-submitit-launcher", "hydra_plugins.hydra_submitit_launcher",
                "alexnet-sweeps[launchers]")
JOBLIB = Need("hydra-joblib-launcher", "hydra_plugins.hydra_joblib_launcher", "alexnet-sweeps[launchers]")
MLFLOW = Need("mlflow", "mlflow", "alexnet-sweeps[mlflow]")
TENSORBOARD = Need("tensorboard", "tensorboard", "alexnet-sweeps[tensorboard]")
# (group, option) -> what choosing it needs (pyproject.toml's extras; tests check they match).
NEEDS: dict[tuple[str, str], tuple[Need, ...]] = {
    ("hydra/sweeper", "optuna"): (SEARCH,),
    ("hydra/sweeper/sampler", "cmaes"): (Need("cmaes", "cmaes", "alexnet-sweeps[search]"),),
    ("hydra/launcher", "slurm"): (SUBMITIT,),
    ("hydra/launcher", "submitit_local"): (SUBMITIT,),
    ("hydra/launcher", "submitit_slurm"): (SUBMITIT,),
    ("hydra/launcher", "joblib"): (JOBLIB,),
    ("logger", "mlflow"): (MLFLOW,),
    ("logger", "tensorboard"): (TENSORBOARD,),
    ("logger", "all"): (MLFLOW, TENSORBOARD),
}
PRIMARY_CONFIG = "config"
# Flags naming another primary config than conf/config.yaml, whose defaults are not looked at.
OTHER_CONFIG_FLAGS = ("-cn", "--config-name", "-cp", "--config-path", "-cd", "--config-dir")


def importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing; a module set to None
        return False


def refusal(argv: Sequence[str], config_module: str) -> str | None:
    """Which missing package a choice needs and how to install it, or None (defaults read last)."""
    missing = {need for needs in NEEDS.values() for need in needs if not importable(need.module)}
    if not missing:
        return None
    try:
        parsed = OverridesParser.create().parse_overrides(
            [a for a in argv if "=" in a and not a.startswith("-")])
    except Exception:  # Hydra will say what is wrong with it
        return None
    found = _first_missing(command_line_choices(parsed), missing)
    if found is not None:
        return _message(*found)
    if any(a.split("=")[0] in OTHER_CONFIG_FLAGS for a in argv):
        return None
    found = _first_missing(default_choices([o.input_line for o in parsed
                                            if not o.is_sweep_override()], config_module), missing)
    if found is None:
        return None
    by = next((o.input_line for o in parsed if o.key_or_group in ("sweep", "experiment")), None)
    return _message(*found, chosen_by=by or "the config")


def _message(group: str, option: str, need: Need, chosen_by: str | None = None) -> str:
    by = f" (chosen by {chosen_by})" if chosen_by else ""
    return f"{group}={option}{by} needs {need.package}, which is not installed: {need.command}"


def _first_missing(chosen: Iterable[tuple[str, str]], missing: set[Need]) -> tuple[str, str, Need] | None:
    for group, option in chosen:
        for need in NEEDS.get((group, option), ()):
            if need in missing:
                return group, option, need
    return None


def command_line_choices(parsed: Sequence[Override]) -> list[tuple[str, str]]:
    """(group, option) of every group choice on the command line, each swept value included."""
    chosen = []
    for override in parsed:
        if override.is_sweep_override():
            try:
                values = list(override.sweep_string_iterator())
            except Exception:  # glob(...), range(...), interval(...): not a list of options
                continue
        else:
            values = [override.get_value_element_as_str()]
        chosen += [(override.key_or_group, str(value)) for value in values]
    return chosen


def default_choices(overrides: Sequence[str], config_module: str) -> list[tuple[str, str]]:
    """(group, option) chosen by the defaults lists, loading no values; [] where Hydra will complain."""
    try:
        with initialize_config_module(config_module=config_module, version_base="1.3"):
            defaults = GlobalHydra.instance().config_loader().compute_defaults_list(
                PRIMARY_CONFIG, list(overrides), RunMode.MULTIRUN)
    except Exception:
        return []
    return [(group, str(option)) for group, option in defaults.overrides.known_choices.items()
            if option is not None]


def listing() -> str:
    """For --help: each install command, after the choices that need it."""
    by_command: dict[str, dict[str, list[str]]] = {}
    for (group, option), needs in NEEDS.items():
        for need in needs:
            by_command.setdefault(need.command, {}).setdefault(group, []).append(option)
    return "\n".join("; ".join(f"{group}={' or '.join(options)}" for group, options in chosen.items())
                     + f": {command}" for command, chosen in by_command.items())


register()
