"""The fused launcher (hydra/launcher=fused): jobs whose networks can be one train in one process
(alexnet/fused.py), each still a run of its own: run dir, Hydra files, log, record and return."""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus, configure_log
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from alexnet.files import write_text_atomic
from alexnet.hyperparameters import dotted
from alexnet.launch.parallel import compose, run_units
from alexnet.launch.placement import jobs_at_once
from alexnet.resume.stop import GracefulStop, Stop

log = logging.getLogger(__name__)

# Keys that must match for runs to train as one network; any other (seed, optimizer...) may differ.
SPLITS = ("model", "batch_size", "epochs", "data", "device", "speed", "torch_threads")
PER_RUN = ("model.dropout", "model.logit_relu")


def group_key(config: DictConfig) -> tuple[tuple[str, str], ...]:
    """What must match for two jobs' runs to be fused (SPLITS, but PER_RUN)."""
    task = copy.deepcopy(config)
    with read_write(task), open_dict(task):
        del task["hydra"]
    values = dotted(OmegaConf.to_container(task, resolve=True, enum_to_str=True))
    return tuple(sorted((key, repr(value)) for key, value in values.items()
                        if key.startswith(SPLITS) and not key.startswith(PER_RUN)))


def launch(launcher: Any, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[JobReturn]:
    """Hydra's launch: jobs grouped, each group (at most `group_size` runs) in one process; job order."""
    n_jobs = jobs_at_once(launcher.config.hydra.launcher)
    failed, groups = [], {}
    for index, overrides in enumerate(job_overrides, start=initial_job_idx):
        (composed,) = compose(launcher, index, overrides, n_jobs)
        if isinstance(composed[1], JobReturn):
            failed.append([composed])
        else:
            groups.setdefault(group_key(composed[1]), []).append(composed)
    size = launcher.group_size or len(job_overrides)
    trained = [group[start:start + size] for group in groups.values() for start in range(0, len(group), size)]
    at_once = max(1, min(n_jobs, len(trained)))  # (fewer groups than places: each gets more cores)
    for part in trained:
        log.info("fused: job(s) %s train as one network", ", ".join(str(i) for i, _ in part))
        for _, config in part:
            config.hydra.launcher.n_jobs = at_once
    returns = dict(run_units(launcher, lambda _: iter(failed + trained), at_once, group=run_group))
    return [returns[index] for index in sorted(returns)]


def run_group(hydra_context: Any, configs: Sequence[DictConfig]) -> list[JobReturn]:
    """In a group's process: each job's run dir, Hydra files and log as run_job makes them, then training."""
    from alexnet.train import run_jobs

    jobs = []
    for config in configs:
        HydraConfig.instance().set_config(config)
        run_dir = Path(config.hydra.runtime.output_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        task = copy.deepcopy(config)
        with read_write(task), open_dict(task):
            del task["hydra"]
        if config.hydra.output_subdir is not None:
            subdir = run_dir / str(config.hydra.output_subdir)
            if subdir.is_symlink():  # (ours: never reached through a link planted in its place)
                subdir.unlink()
            subdir.mkdir(exist_ok=True)
            for name, node in (("config.yaml", task), ("hydra.yaml", {"hydra": config.hydra}),
                               ("overrides.yaml", config.hydra.overrides.task)):
                write_text_atomic(subdir / name, OmegaConf.to_yaml(node))
        jobs.append((task, config.hydra))
    _log_each_run(configs)
    for config in configs:
        hydra_context.callbacks.on_job_start(config=config, task_function=run_jobs)
    with GracefulStop() as stop:
        values = run_jobs(jobs, stop)
    returns = []
    for config, (task, _), value in zip(configs, jobs, values, strict=True):
        ret = JobReturn(overrides=list(config.hydra.overrides.task), cfg=task, hydra_cfg=config,
                        working_dir=os.getcwd(), task_name=config.hydra.job.name, status=JobStatus.COMPLETED)
        ret.return_value = value
        hydra_context.callbacks.on_job_end(config=config, job_return=ret)
        returns.append(ret)
    if stop.signal in GracefulStop.SIGNALS:  # (after the runs' last safe point: the sweep stops)
        raise Stop(f"{stop.signal.name} as the fused runs ended (kept as they ended)",
                   exit_code=stop.exit_code, output_dir=str(configs[0].hydra.sweep.dir))
    return returns


class _OwnLog(logging.FileHandler):
    """A run's log file, appended to without following a link planted in its place."""

    def _open(self) -> Any:
        path = Path(self.baseFilename)
        if path.is_symlink():
            path.unlink()
        return open(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o666),
                    "a", encoding=self.encoding)


def _log_each_run(configs: Sequence[DictConfig]) -> None:
    """Hydra's job logging of the first job, and a log file in each job's run dir."""
    first = Path(str(configs[0].hydra.runtime.output_dir)) / f"{configs[0].hydra.job.name}.log"
    if first.is_symlink():  # (Hydra's handler, swapped below, would open it through the link)
        first.unlink()
    configure_log(configs[0].hydra.job_logging, configs[0].hydra.verbose)
    root = logging.getLogger()
    template = next((h for h in root.handlers if isinstance(h, logging.FileHandler)), None)
    for handler in [h for h in root.handlers if isinstance(h, logging.FileHandler)]:
        root.removeHandler(handler)
        handler.close()
    for config in configs:
        run_dir = str(config.hydra.runtime.output_dir)
        handler = _OwnLog(Path(run_dir) / f"{config.hydra.job.name}.log")
        if template is not None:
            handler.setFormatter(template.formatter)
        # (it takes its run's own lines and the group's, not its siblings')
        handler.addFilter(lambda record, run_dir=run_dir: getattr(record, "run_dir", run_dir) == run_dir)
        root.addHandler(handler)
