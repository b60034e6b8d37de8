"""TensorBoard: an event file per run (`tensorboard/` in its run dir) with epoch scalars and HParams,
so `tensorboard --logdir SWEEP_DIR` compares a sweep's runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alexnet.hyperparameters import flat_config
from alexnet.run.record import RunRecord


class TensorBoardTracker:
    name = "tensorboard"

    def __init__(self, dir: str = "tensorboard", *, config_name: str = "",
                 sweep_dir: Path | None = None) -> None:
        """`dir`: the folder in each run dir; the run's files hold all else, so the other two go unused."""
        from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package

        self._writer_class = SummaryWriter
        self.folder = str(dir)
        self.writer: Any = None

    def start(self, record: RunRecord) -> None:
        # On a resume, TensorBoard drops what an earlier attempt logged from the redone epoch on.
        resume_at = len(record.epochs) + 1 if record.summary["attempts"][:-1] else None
        self.writer = self._writer_class(log_dir=str(record.run_dir / self.folder), purge_step=resume_at)

    def log_epoch(self, row: dict[str, Any]) -> None:
        for key, value in row.items():
            if key != "epoch":
                self.writer.add_scalar(key, value, row["epoch"])
        self.writer.flush()

    def finish(self, record: RunRecord) -> None:
        if self.writer is None:  # it failed before training: nothing to show
            return
        final, best = record.summary.get("final") or {}, record.summary.get("best") or {}
        scores = {"hparam/final_acc": final.get("test_acc"), "hparam/best_acc": best.get("test_acc"),
                  "hparam/final_f1": final.get("test_f1")}
        hparams = {**flat_config(record.summary["config"]), "status": record.summary["status"]}
        self.writer.add_hparams(hparams, {k: v for k, v in scores.items() if v is not None},
                                run_name=".")  # in the run's own folder, beside its scalars
        self.writer.close()
