"""What --help shows beyond Hydra's template variables, as resolvers its template calls
(conf/config.yaml, conf/show_data.yaml: hydra.help.template):

- `${alexnet_groups:GROUP,...}`: those groups and the groups below them, each with its options,
  as Hydra's $APP_CONFIG_GROUPS lists the app's. Hydra's $HYDRA_CONFIG_GROUPS would list all of
  its own (hydra/env, hydra/output, hydra/job_logging...); the template names the ones a user
  picks from (hydra/launcher, hydra/sweeper), and their options and subgroups (the sweeper's
  sampler and pruner) are read from Hydra's config repository, so a plugin installed later shows;
- `${alexnet_extras:}`: which choices need what installed (alexnet/extras.py)."""

from __future__ import annotations

from omegaconf import OmegaConf

from alexnet import extras


def groups(*parents: str) -> str:
    """Each group in `parents` and below, `group: option, option` a line (as Hydra lists the
    app's groups)."""
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
