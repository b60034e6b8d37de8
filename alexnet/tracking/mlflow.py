"""MLflow: a run per job (flattened config, epoch metrics, status, files) under a parent run per sweep.
The default store is a SQLite file under outputs/ (MLflow 3's default kind of store)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from alexnet.files import write_text_atomic
from alexnet.hyperparameters import flat_config
from alexnet.run.record import RunRecord
from alexnet.scores import SUCCEEDED, Status

QUIET_LOGGERS = ("mlflow.store.db.utils", "alembic")  # SQLite table setup: nothing a user can act on
PARENT_FILE = ".mlflow_parent_run"  # in the sweep dir: the parent run's id, for jobs and resumes
SWEEP_FILES = ("results.csv", "results.md", "summary.csv", "summary.md", "effects.csv",
               "effects.md", "effects.png", "learning_curves.png", "final_scores.png",
               "confusion_superclass.png", "notebook_comparison.md", "best_filters.png",
               "best_mistakes.png", "best_mistakes.csv", "search.md", "search.csv")


def _client(settings: DictConfig) -> Any:
    from mlflow.tracking import MlflowClient

    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    return MlflowClient(tracking_uri=str(settings.tracking_uri))


def _artifact_location(settings: DictConfig) -> str | None:
    """Beside a SQLite database: <its folder>/mlflow-artifacts (else the store's default)."""
    if settings.artifact_location:
        return str(settings.artifact_location)
    uri = str(settings.tracking_uri)
    if uri.startswith("sqlite:///"):
        return (Path(uri.removeprefix("sqlite:///")).resolve().parent / "mlflow-artifacts").as_uri()
    return None


def experiment_id(client: Any, settings: DictConfig, default_name: str) -> str:
    """The experiment's id, made if it does not exist (parallel jobs may race to make it)."""
    name = str(settings.experiment or default_name)
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(name, artifact_location=_artifact_location(settings))
    except Exception:  # another job made it first
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


class MlflowTracker:
    name = "mlflow"

    def __init__(self, tracking_uri: str, experiment: str | None = None, artifact_location: str | None = None,
                 *, config_name: str, sweep_dir: Path | None) -> None:
        self.settings = OmegaConf.create({"tracking_uri": tracking_uri, "experiment": experiment,
                                          "artifact_location": artifact_location})
        self.config_name, self.sweep_dir = config_name, sweep_dir
        self.client = _client(self.settings)
        self.run_id: str | None = None

    def start(self, record: RunRecord) -> None:
        from mlflow.entities import Param

        tracking = record.summary.setdefault("tracking", {})
        self.run_id = tracking.get("mlflow_run_id")
        if self.run_id is not None:  # a resume: go on logging into the same MLflow run
            self.client.update_run(self.run_id, status="RUNNING")
            return
        tags = {"run_dir": str(record.run_dir), "overrides": " ".join(record.summary["overrides"])}
        parent = self.sweep_dir / PARENT_FILE if self.sweep_dir is not None else None
        if parent is not None and parent.is_file():
            tags["mlflow.parentRunId"] = parent.read_text().strip()
        run = self.client.create_run(experiment_id(self.client, self.settings, self.config_name), tags=tags,
                                     run_name=" ".join(record.summary["overrides"]) or record.run_dir.name)
        self.run_id = tracking["mlflow_run_id"] = run.info.run_id
        params = [Param(k, str(v)[:6000]) for k, v in flat_config(record.summary["config"]).items()]
        for start in range(0, len(params), 100):  # MLflow takes at most 100 params a call
            self.client.log_batch(self.run_id, params=params[start:start + 100])

    def log_epoch(self, row: dict[str, Any]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(key, float(value), now, int(row["epoch"]))
                                                    for key, value in row.items() if key != "epoch"])

    def finish(self, record: RunRecord) -> None:
        if self.run_id is None:  # it failed before training: on record in MLflow too
            self.start(record)
        status = record.summary["status"]
        self.client.set_tag(self.run_id, "status", status)
        for name in ("results.json", "metrics.csv", "confusion_superclass.csv"):
            if (record.run_dir / name).is_file():
                self.client.log_artifact(self.run_id, str(record.run_dir / name))
        state = "FINISHED" if status in SUCCEEDED else "KILLED" if status == Status.interrupted else "FAILED"
        self.client.set_terminated(self.run_id, state)


def start_sweep_run(settings: DictConfig, config_name: str, sweep_dir: Path) -> str:
    """The sweep's parent run (made once; a resumed sweep reuses it)."""
    path = sweep_dir / PARENT_FILE
    client = _client(settings)
    if path.is_file() and not path.is_symlink():  # (a link planted there is no run of ours)
        run_id = path.read_text().strip()
        client.update_run(run_id, status="RUNNING")
        return run_id
    run = client.create_run(experiment_id(client, settings, config_name),
                            run_name=f"sweep {sweep_dir}", tags={"sweep_dir": str(sweep_dir)})
    sweep_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, run.info.run_id + "\n")
    return run.info.run_id


def finish_sweep_run(settings: DictConfig, sweep_dir: Path, succeeded: bool) -> None:
    """Attach the sweep's table, summary and plots to its parent run and close it."""
    path = sweep_dir / PARENT_FILE
    if not path.is_file():
        return
    client, run_id = _client(settings), path.read_text().strip()
    for name in SWEEP_FILES:
        if (sweep_dir / name).is_file():
            client.log_artifact(run_id, str(sweep_dir / name))
    client.set_terminated(run_id, "FINISHED" if succeeded else "FAILED")
