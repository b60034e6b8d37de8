"""The config's typed schema (Hydra structured configs): a wrong type or choice is refused at
composition, naming the key. Stored at the store's root, not in a group, so --help lists only
groups a user picks from; config_checks.py keeps ranges and cross-key rules."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from hydra.core.config_store import ConfigStore


class Choice(str, Enum):
    """A key's allowed values; printed as the value itself (`tensor`, not `Pipeline.tensor`)."""

    def __str__(self) -> str:
        return self.value


def _choices(name: str, *values: str) -> Any:
    return Choice(name, {value: value for value in values})


Keep = _choices("Keep", "weights", "full", "best", "none")  # what stays of a finished run's weights
Mode = _choices("Mode", "auto", "max", "min")  # auto: higher is better, but for losses
Monitor = _choices("Monitor", "auto", "test_acc", "test_loss", "test_f1", "test_top5", "train_loss",
                   "val_acc", "val_loss", "val_f1", "val_top5")  # (val_*: need data.val_split)
Pipeline = _choices("Pipeline", "tensor", "torchvision")  # (alexnet/data/pipelines.py)
Autocast = _choices("Autocast", "auto", "bf16", "fp16", "fp32")


@dataclass
class CheckpointSchema:
    keep: Keep = Keep.weights


@dataclass
class EarlyStopSchema:
    patience: int | None = None
    monitor: Monitor = Monitor.auto
    mode: Mode = Mode.auto
    min_delta: float = 0.0


@dataclass
class LaunchSchema:
    slots_dir: str | None = None
    queue_poll_s: float = 10.0
    result_wait_s: float = 30.0
    queue_lost_s: float = 600.0


@dataclass
class DataSchema:
    root: str = "data"
    download: bool = True
    train_subset: int | None = None
    test_subset: int | None = None
    num_workers: int = 0
    pipeline: Pipeline = Pipeline.tensor
    val_split: int | None = None
    val_seed: int = 0


@dataclass
class AugmentationSchema:
    crop: bool = True
    resize: int = 230
    flip: bool = True
    normalize: bool = True
    mean: list[float] = field(default_factory=lambda: [0.4914, 0.4822, 0.4465])
    std: list[float] = field(default_factory=lambda: [0.2023, 0.1994, 0.2010])


@dataclass
class SpeedSchema:
    # auto/true/false: a union OmegaConf 2.3 cannot type; config_checks.py checks them
    channels_last: Any = "auto"
    autocast: Autocast = Autocast.auto
    compile: Any = "auto"
    cuda_graphs: Any = "auto"
    compile_backend: str = "inductor"
    cudnn_benchmark: Any = True
    keep_freed_memory: Any = "auto"


@dataclass
class LossSchema:
    label_smoothing: float = 0.0


@dataclass
class ReportSchema:
    margin: float = 0.01  # smaller differences (in the score's units) count as no effect


@dataclass
class NotebookSchema:
    """What the notebook reported for an experiment (experiment/alexnetN.yaml)."""

    run: str = ""
    f1: float = 0.0
    accuracy: float = 0.0


@dataclass
class ShowDataSchema:
    images: int = 8  # images per grid


@dataclass
class ConfigSchema:
    # auto = val_acc with data.val_split, else test_acc; or a metrics.csv column or wall_time_s,
    # or a list of them (a Pareto search). Returned to a sweeper (alexnet/scores.py).
    objective: Any = "auto"
    batch_size: int = 32
    epochs: int = 20
    seed: int = 0
    device: str = "auto"
    progress: bool = True
    torch_threads: int | None = None
    heartbeat_s: float = 30.0
    launch: LaunchSchema = field(default_factory=LaunchSchema)
    checkpoint: CheckpointSchema = field(default_factory=CheckpointSchema)
    early_stop: EarlyStopSchema = field(default_factory=EarlyStopSchema)
    speed: SpeedSchema = field(default_factory=SpeedSchema)
    data: DataSchema = field(default_factory=DataSchema)
    augmentation: AugmentationSchema = field(default_factory=AugmentationSchema)
    model: Any = None  # typed by each option's schema below
    optimizer: Any = None
    scheduler: Any = None
    loss: LossSchema = field(default_factory=LossSchema)
    report: ReportSchema = field(default_factory=ReportSchema)
    logger: Any = None
    notebook: NotebookSchema | None = None
    show_data: ShowDataSchema | None = None


# Schemas of the model/, optimizer/, scheduler/ and logger/ options.

@dataclass
class AlexNetSchema:
    name: str = "alexnet"
    input_size: int = 227
    crop_resize: int = 230
    num_classes: int = 100
    dropout: float = 0.5
    first_batchnorm: bool = True
    logit_relu: bool = False


@dataclass
class AlexNetCifarSchema(AlexNetSchema):
    name: str = "alexnet_cifar"
    input_size: int = 32
    crop_resize: int = 36
    hidden_batchnorm: bool = True


@dataclass
class SgdSchema:
    _target_: str = "torch.optim.SGD"
    lr: float = 0.005
    momentum: float = 0.0
    weight_decay: float = 0.0
    nesterov: bool = False


@dataclass
class AdamSchema:
    _target_: str = "torch.optim.Adam"
    lr: float = 0.005
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 0.0


@dataclass
class CosineSchema:
    _target_: str = "alexnet.schedules.Cosine"
    warmup_epochs: float = 0.0
    warmup_start: float = 0.1
    min_factor: float = 0.0


@dataclass
class OneCycleSchema:
    _target_: str = "alexnet.schedules.OneCycle"
    warmup_fraction: float = 0.3
    warmup_start: float = 0.04
    min_factor: float = 1e-4


@dataclass
class StepSchema:
    _target_: str = "alexnet.schedules.Step"
    warmup_epochs: float = 0.0
    warmup_start: float = 0.1
    every_epochs: int = 5
    gamma: float = 0.1


@dataclass
class MlflowSchema:
    _target_: str = "alexnet.tracking.mlflow.MlflowTracker"
    tracking_uri: str = "sqlite:///outputs/mlflow.db"
    experiment: str | None = None
    artifact_location: str | None = None


@dataclass
class TensorBoardSchema:
    _target_: str = "alexnet.tracking.tensorboard.TensorBoardTracker"
    dir: str = "tensorboard"


SCHEMAS = {
    "config_schema": ConfigSchema,
    "model_alexnet_schema": AlexNetSchema,
    "model_alexnet_cifar_schema": AlexNetCifarSchema,
    "optimizer_sgd_schema": SgdSchema,
    "optimizer_adam_schema": AdamSchema,
    "scheduler_cosine_schema": CosineSchema,
    "scheduler_onecycle_schema": OneCycleSchema,
    "scheduler_step_schema": StepSchema,
    "logger_mlflow_schema": MlflowSchema,
    "logger_tensorboard_schema": TensorBoardSchema,
}
for name, node in SCHEMAS.items():
    ConfigStore.instance().store(name=name, node=node)
