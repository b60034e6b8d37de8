"""Resolvers for an app's own sweeper config to take its objective from the app's setting:
`direction: ${alexnet_directions:${objective},${data.val_split}}` and `metric_names:
${alexnet_objectives:...}` follow alexnet's `objective` as alexnet/scores.py reads it (auto:
val_acc with a validation split, else test_acc; accuracies maximized, losses and times minimized)."""

from __future__ import annotations

from typing import Any

from omegaconf import OmegaConf


def objective_names(objective: Any, val_split: Any) -> list[str]:
    from alexnet import scores

    if OmegaConf.is_config(objective):
        objective = OmegaConf.to_container(objective)
    return scores.objectives({"objective": objective, "data": {"val_split": val_split}})


def directions(objective: Any, val_split: Any) -> str | list[str]:
    """One direction per objective; a single one as a string, as the official plugin takes it."""
    from alexnet import scores

    found = ["maximize" if scores.higher_is_better(name) else "minimize"
             for name in objective_names(objective, val_split)]
    return found[0] if len(found) == 1 else found


def register_resolvers() -> None:
    OmegaConf.register_new_resolver("alexnet_objectives", objective_names, replace=True)
    OmegaConf.register_new_resolver("alexnet_directions", directions, replace=True)
