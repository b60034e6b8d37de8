"""The Optuna sweeper's structured configs: the official plugin's keys and samplers, plus our pruners.
Kept free of optuna: Hydra imports this with every plugin at every start of every app."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING, OmegaConf

SWEEPER = "hydra_plugins.alexnet_sweeps.optuna_sweeper.OptunaSweeper"
SAMPLERS = "optuna.samplers"
PRUNERS = "optuna.pruners"


# Samplers: the official plugin's configs key for key (its defaults, e.g. TPE's constant_liar).

@dataclass
class TPESamplerConfig:
    _target_: str = f"{SAMPLERS}.TPESampler"
    seed: int | None = None
    consider_prior: bool | None = None
    prior_weight: float | None = None
    consider_magic_clip: bool | None = None
    consider_endpoints: bool | None = None
    n_startup_trials: int = 10
    n_ei_candidates: int = 24
    multivariate: bool = False
    group: bool = False
    warn_independent_sampling: bool | None = None
    constant_liar: bool = False
    constraints_func: Any = None


@dataclass
class RandomSamplerConfig:
    _target_: str = f"{SAMPLERS}.RandomSampler"
    seed: int | None = None


@dataclass
class GridSamplerConfig:
    """Partial: given its grid (every choice/range value) when the search starts."""

    _target_: str = f"{SAMPLERS}.GridSampler"
    _partial_: bool = True
    seed: int | None = None


@dataclass
class CmaEsSamplerConfig:
    _target_: str = f"{SAMPLERS}.CmaEsSampler"
    seed: int | None = None
    x0: dict[str, Any] | None = None
    sigma0: float | None = None
    n_startup_trials: int = 1
    independent_sampler: Any = None
    warn_independent_sampling: bool = True
    consider_pruned_trials: bool = False
    restart_strategy: Any = None
    popsize: int | None = None
    inc_popsize: int = -1
    use_separable_cma: bool = False
    with_margin: bool = False
    lr_adapt: bool = False
    source_trials: Any = None


@dataclass
class NSGAIISamplerConfig:
    _target_: str = f"{SAMPLERS}.NSGAIISampler"
    seed: int | None = None
    population_size: int = 50
    mutation_prob: float | None = None
    mutation: Any = None
    crossover: Any = None
    crossover_prob: float = 0.9
    swapping_prob: float = 0.5
    constraints_func: Any = None


@dataclass
class NSGAIIISamplerConfig(NSGAIISamplerConfig):
    _target_: str = "alexnet.search.samplers.nsgaiii"  # (its reference points: lists to an array)
    reference_points: list[list[float]] | None = None
    dividing_parameter: int = 3


@dataclass
class MOTPESamplerConfig:
    _target_: str = "alexnet.search.samplers.motpe_removed"


@dataclass
class GPSamplerConfig:
    _target_: str = f"{SAMPLERS}.GPSampler"
    seed: int | None = None
    independent_sampler: Any = None
    n_startup_trials: int = 10
    deterministic_objective: bool = False
    constraints_func: Any = None
    warn_independent_sampling: bool = True


@dataclass
class QMCSamplerConfig:
    _target_: str = f"{SAMPLERS}.QMCSampler"
    seed: int | None = None
    qmc_type: str = "sobol"
    scramble: bool = False
    independent_sampler: Any = None
    warn_asynchronous_seeding: bool = True
    warn_independent_sampling: bool = True


# Pruners (ours), Optuna's defaults; a run asks its pruner through alexnet.search.trial.report().

@dataclass
class NopPrunerConfig:
    _target_: str = f"{PRUNERS}.NopPruner"


@dataclass
class MedianPrunerConfig:
    _target_: str = f"{PRUNERS}.MedianPruner"
    n_startup_trials: int = 5
    n_warmup_steps: int = 0
    interval_steps: int = 1
    n_min_trials: int = 1


@dataclass
class PercentilePrunerConfig:
    _target_: str = f"{PRUNERS}.PercentilePruner"
    percentile: float = MISSING
    n_startup_trials: int = 5
    n_warmup_steps: int = 0
    interval_steps: int = 1
    n_min_trials: int = 1


@dataclass
class SuccessiveHalvingPrunerConfig:
    _target_: str = f"{PRUNERS}.SuccessiveHalvingPruner"
    min_resource: Any = "auto"  # steps before the first rung, or auto
    reduction_factor: int = 4
    min_early_stopping_rate: int = 0
    bootstrap_count: int = 0  # trials that must reach a rung before any is promoted past it


@dataclass
class HyperbandPrunerConfig:
    _target_: str = f"{PRUNERS}.HyperbandPruner"
    min_resource: int = 1
    max_resource: Any = "auto"  # the steps a trial gets, or auto (learned from a finished trial)
    reduction_factor: int = 3
    bootstrap_count: int = 0


@dataclass
class ThresholdPrunerConfig:
    _target_: str = f"{PRUNERS}.ThresholdPruner"
    lower: float | None = None
    upper: float | None = None
    n_warmup_steps: int = 0
    interval_steps: int = 1


@dataclass
class PatientPrunerConfig:
    _target_: str = f"{PRUNERS}.PatientPruner"
    wrapped_pruner: Any = None
    patience: int = MISSING
    min_delta: float = 0.0


@dataclass
class WilcoxonPrunerConfig:
    _target_: str = f"{PRUNERS}.WilcoxonPruner"
    p_threshold: float = 0.1
    n_startup_steps: int = 2


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


SAMPLER_CONFIGS = {"tpe": TPESamplerConfig, "random": RandomSamplerConfig,
                   "grid": GridSamplerConfig, "cmaes": CmaEsSamplerConfig,
                   "nsgaii": NSGAIISamplerConfig, "nsgaiii": NSGAIIISamplerConfig,
                   "motpe": MOTPESamplerConfig, "gp": GPSamplerConfig, "qmc": QMCSamplerConfig}
PRUNER_CONFIGS = {"none": NopPrunerConfig, "median": MedianPrunerConfig,
                  "percentile": PercentilePrunerConfig,
                  "successive_halving": SuccessiveHalvingPrunerConfig,
                  "hyperband": HyperbandPrunerConfig, "threshold": ThresholdPrunerConfig,
                  "patient": PatientPrunerConfig, "wilcoxon": WilcoxonPrunerConfig}
# Not `optuna`: Hydra would match an app's optuna.yaml against it; the _ hides it from --help.
DEFAULTS_NAME = "_optuna_defaults"


def register() -> None:
    """The sweeper's defaults and its sampler and pruner groups, for every app."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    store.store(group="hydra/sweeper", name=DEFAULTS_NAME, node=OptunaSweeperConf,
                provider="alexnet_sweeps")
    for group, configs in (("sampler", SAMPLER_CONFIGS), ("pruner", PRUNER_CONFIGS)):
        for name, node in configs.items():
            store.store(group=f"hydra/sweeper/{group}", name=name, node=node,
                        provider="alexnet_sweeps")
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
