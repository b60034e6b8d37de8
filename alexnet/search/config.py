"""The Optuna sweeper's structured configs: the official plugin's keys and samplers, plus our pruners.
Kept free of optuna: Hydra imports this with every plugin at every start of every app."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field, make_dataclass
from typing import Any, NoReturn

from omegaconf import MISSING, OmegaConf

SWEEPER = "hydra_plugins.alexnet_sweeps.optuna_sweeper.OptunaSweeper"
SAMPLERS = "optuna.samplers"
PRUNERS = "optuna.pruners"

INT, FLOAT, BOOL = (int | None, None), (float | None, None), (bool | None, None)  # typed, null


def _config(target: str, **options: Any) -> type:
    """A structured config of `target`: each option typed by its default, or (type, default)."""
    return make_dataclass(target.rsplit(".", 1)[-1] + "Config", [("_target_", str, target), *(
        (name, *value) if isinstance(value, tuple) else
        (name, Any if value is None else type(value), value) for name, value in options.items())])


# Samplers: the official plugin's configs key for key (its defaults, e.g. TPE's constant_liar).
NSGAII = dict(seed=INT, population_size=50, mutation_prob=FLOAT, mutation=None, crossover=None,
              crossover_prob=0.9, swapping_prob=0.5, constraints_func=None)
SAMPLER_CONFIGS = {
    "tpe": _config(f"{SAMPLERS}.TPESampler", seed=INT, consider_prior=BOOL, prior_weight=FLOAT,
                   consider_magic_clip=BOOL, consider_endpoints=BOOL, n_startup_trials=10, n_ei_candidates=24,
                   multivariate=False, group=False, warn_independent_sampling=BOOL, constant_liar=False,
                   constraints_func=None),
    "random": _config(f"{SAMPLERS}.RandomSampler", seed=INT),
    "grid": _config(f"{SAMPLERS}.GridSampler", _partial_=True, seed=INT),  # (its grid: at start)
    "cmaes": _config(f"{SAMPLERS}.CmaEsSampler", seed=INT, x0=None, sigma0=FLOAT, n_startup_trials=1,
                     independent_sampler=None, warn_independent_sampling=True, consider_pruned_trials=False,
                     restart_strategy=None, popsize=INT, inc_popsize=-1, use_separable_cma=False,
                     with_margin=False, lr_adapt=False, source_trials=None),
    "nsgaii": _config(f"{SAMPLERS}.NSGAIISampler", **NSGAII),
    "nsgaiii": _config("alexnet.search.config.nsgaiii", **NSGAII, reference_points=None,
                       dividing_parameter=3),  # (its reference points: lists to an array)
    "motpe": _config("alexnet.search.config.motpe_removed"),
    "gp": _config(f"{SAMPLERS}.GPSampler", seed=INT, independent_sampler=None, n_startup_trials=10,
                  deterministic_objective=False, constraints_func=None, warn_independent_sampling=True),
    "qmc": _config(f"{SAMPLERS}.QMCSampler", seed=INT, qmc_type="sobol", scramble=False,
                   independent_sampler=None, warn_asynchronous_seeding=True, warn_independent_sampling=True),
}
# Pruners (ours), Optuna's defaults; a run asks its pruner through alexnet.search.trial.report().
STEPS = dict(n_startup_trials=5, n_warmup_steps=0, interval_steps=1, n_min_trials=1)
PRUNER_CONFIGS = {
    "none": _config(f"{PRUNERS}.NopPruner"),
    "median": _config(f"{PRUNERS}.MedianPruner", **STEPS),
    "percentile": _config(f"{PRUNERS}.PercentilePruner", percentile=(float, MISSING), **STEPS),
    "successive_halving": _config(f"{PRUNERS}.SuccessiveHalvingPruner", min_resource=(Any, "auto"),
                                  reduction_factor=4, min_early_stopping_rate=0, bootstrap_count=0),
    "hyperband": _config(f"{PRUNERS}.HyperbandPruner", min_resource=1, max_resource=(Any, "auto"),
                         reduction_factor=3, bootstrap_count=0),
    "threshold": _config(f"{PRUNERS}.ThresholdPruner", lower=FLOAT, upper=FLOAT, n_warmup_steps=0,
                         interval_steps=1),
    "patient": _config(f"{PRUNERS}.PatientPruner", wrapped_pruner=None, patience=(int, MISSING),
                       min_delta=0.0),
    "wilcoxon": _config(f"{PRUNERS}.WilcoxonPruner", p_threshold=0.1, n_startup_steps=2),
}


@dataclass
class OptunaSweeperConf:
    """The official plugin's keys and defaults, then ours (pruner, resume_identity, metric_names)."""

    _target_: str = SWEEPER
    defaults: list[Any] = field(default_factory=lambda: [{"sampler": "tpe"}, {"pruner": "none"}])
    sampler: Any = MISSING
    direction: Any = "minimize"  # or a list, one per objective: [minimize, maximize]
    storage: Any = None  # null: in memory (no resume); a URL, journal:PATH, or a storage config
    study_name: str | None = None  # null: a new study with a made-up name at every start
    n_trials: int = 20  # trials to finish; with a stored study, counted across its reruns
    n_jobs: int | None = 2  # trials at a time; null (ours): as many as the launcher runs
    max_failure_rate: float = 0.0  # share of a batch of n_jobs trials that may fail (raise)
    params: dict[str, str] | None = None  # the search space: {x: "interval(-5, 5)", y: ...}
    custom_search_space: str | None = None  # module.function(cfg, trial), suggesting more
    search_space: dict[str, Any] | None = None  # the official plugin's deprecated form of params
    pruner: Any = MISSING  # (ours from here on)
    resume_identity: str | None = None  # module.function(fixed overrides) -> those a rerun must repeat
    metric_names: Any = None  # the objective values' names (Optuna's metric names), or null


# Not `optuna`: Hydra would match an app's optuna.yaml against it; the _ hides it from --help.
DEFAULTS_NAME = "_optuna_defaults"


def register() -> None:
    """The sweeper's defaults and its sampler and pruner groups, for every app."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    store.store(group="hydra/sweeper", name=DEFAULTS_NAME, node=OptunaSweeperConf, provider="alexnet_sweeps")
    for group, configs in (("sampler", SAMPLER_CONFIGS), ("pruner", PRUNER_CONFIGS)):
        for name, node in configs.items():
            store.store(group=f"hydra/sweeper/{group}", name=name, node=node, provider="alexnet_sweeps")
    OmegaConf.register_new_resolver("alexnet_objectives", objective_names, replace=True)
    OmegaConf.register_new_resolver("alexnet_directions", directions, replace=True)


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


# The packages a sampler imports only when it first samples: checked before any trial.
NEEDS = {"CmaEsSampler": ("cmaes",), "GPSampler": ("torch", "scipy")}


def motpe_removed(*args: Any, **kwargs: Any) -> NoReturn:
    from alexnet.search.space import refuse

    refuse("The 'motpe' sampler was removed in Optuna 4.0. Use 'hydra/sweeper/sampler=tpe' "
           "instead. TPESampler now handles multi-objective optimization.")


def nsgaiii(reference_points: list[list[float]] | None = None, **options: Any) -> Any:
    """optuna.samplers.NSGAIIISampler, its reference points given as lists in the config."""
    import numpy as np
    import optuna

    points = None if reference_points is None else np.asarray(reference_points, dtype=float)
    return optuna.samplers.NSGAIIISampler(reference_points=points, **options)


def missing_packages(sampler: Any) -> list[str]:
    return [name for name in NEEDS.get(type(sampler).__name__, ()) if importlib.util.find_spec(name) is None]


def continuing_seed(seed: int, trials_before: int) -> int:
    """The configured seed for a new study; for a later start another one, fixed by both arguments."""
    if trials_before == 0:
        return seed
    import numpy as np

    return int(np.random.SeedSequence([seed, trials_before]).generate_state(1)[0])


def reseeded(config: Any, built: Any, trials_before: int) -> Any:
    """`built`, reseeded when it continues a study; QMC keeps its seed (its sequence goes on by itself)."""
    import optuna
    from hydra.utils import instantiate

    seed = config.get("seed") if config is not None else None
    if seed is None or trials_before == 0 or isinstance(built, optuna.samplers.QMCSampler):
        return built
    return instantiate(config, seed=continuing_seed(int(seed), trials_before))
