"""Where configs come from: `conf/` and `sweeps/`, shipped as package data so the installed app finds
them from any folder; composes them outside Hydra (benchmarks, tests) as `alexnet.train` does."""

from __future__ import annotations

import importlib.resources
import re

from hydra import compose, initialize_config_module
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from alexnet import (
    config_schema,  # noqa: F401 - registers the schemas the configs start from
    extras,
)

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
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.object_type import ObjectType

    loader = GlobalHydra.instance().config_loader()

    def below(group: str) -> list[str]:
        found = [group] if loader.get_group_options(group, ObjectType.CONFIG) else []
        for child in sorted(loader.get_group_options(group, ObjectType.GROUP)):
            found += below(f"{group}/{child}")
        return found

    def options(group: str) -> list[str]:  # (a leading _ marks a schema, not a choice)
        return sorted(o for o in loader.get_group_options(group) if not o.startswith("_"))

    return "\n".join(f"{group}: {', '.join(options(group))}"
                     for parent in parents for group in below(parent))


def register() -> None:
    for name, resolver in (("alexnet_groups", groups), ("alexnet_extras", extras.listing)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver)


register()
