"""Every option of every config group composes, and the experiments hold the notebook's values."""

import re

import pytest
from hydra import compose, initialize_config_module
from hydra.errors import MissingConfigException
from omegaconf import OmegaConf

from alexnet.config_checks import ConfigError, validate
from alexnet.configs import CONFIG_MODULE, compose_config
from conftest import REPO


def options(group: str) -> list[str]:
    """The group's options as files: conf/<group>/, and the sweep presets in sweeps/."""
    folder = REPO / "sweeps" if group == "sweep" else REPO / "conf" / group
    return sorted(p.stem for p in folder.glob("*.yaml"))


@pytest.mark.parametrize("group", ["augmentation", "optimizer", "model", "data", "experiment",
                                   "scheduler", "sweep"])
def test_every_option_of_every_group_composes_and_validates(group):
    assert options(group), f"conf/{group}/ is empty"
    for option in options(group):
        cfg = compose_config(f"{group}={option}")
        OmegaConf.resolve(cfg)
        validate(cfg)


def test_augmentation_presets_cover_the_notebook_combinations():
    switches = {
        name: tuple(compose_config(f"augmentation={name}").augmentation[k]
                    for k in ("crop", "flip", "normalize"))
        for name in options("augmentation")
    }
    assert switches == {
        "none": (False, False, False),
        "flip": (False, True, False),
        "crop": (True, False, False),
        "crop_flip": (True, True, False),
        "crop_normalize": (True, False, True),
        "crop_flip_normalize": (True, True, True),
    }


def test_crop_resize_follows_the_model():
    assert compose_config().augmentation.resize == 230
    assert compose_config("model=alexnet_cifar").augmentation.resize == 36
    assert compose_config("augmentation.resize=240").augmentation.resize == 240


# (augmentation, batch size, lr, optimizer, epochs) of the notebook's eight runs.
NOTEBOOK = {
    1: ("none", 32, 0.005, "SGD", 10),
    2: ("crop", 64, 0.005, "SGD", 10),
    3: ("crop_normalize", 64, 0.001, "SGD", 10),
    4: ("crop_flip_normalize", 128, 0.005, "SGD", 10),
    5: ("crop_flip", 64, 0.005, "SGD", 10),
    6: ("crop_flip", 32, 0.005, "SGD", 10),
    7: ("crop_flip_normalize", 32, 0.005, "SGD", 20),
    8: ("crop_flip_normalize", 32, 0.005, "Adam", 20),
}


@pytest.mark.parametrize("number", sorted(NOTEBOOK))
def test_experiments_hold_the_notebook_hyperparameters(number):
    preset, batch_size, lr, optimizer, epochs = NOTEBOOK[number]
    cfg = compose_config(f"experiment=alexnet{number}")
    assert cfg.augmentation == compose_config(f"augmentation={preset}").augmentation
    assert (cfg.batch_size, cfg.optimizer.lr, cfg.epochs) == (batch_size, lr, epochs)
    assert cfg.optimizer._target_ == f"torch.optim.{optimizer}"
    assert cfg.model.name == "alexnet" and cfg.model.input_size == 227
    assert cfg.model.logit_relu is True  # the notebook's network
    assert cfg.notebook.run == f"AlexNet {number}"


def test_command_line_beats_the_experiment():
    cfg = compose_config("experiment=alexnet8", "model.logit_relu=false", "model=alexnet_cifar")
    assert cfg.model.logit_relu is False and cfg.model.name == "alexnet_cifar"
    assert cfg.optimizer._target_ == "torch.optim.Adam"


def test_single_switches_override_a_preset():
    cfg = compose_config("augmentation=crop_flip_normalize", "augmentation.flip=false")
    assert (cfg.augmentation.crop, cfg.augmentation.flip, cfg.augmentation.normalize) == (
        True, False, True)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("batch_size=0", r"batch_size=0 is not allowed: it must be a positive integer"),
        ("epochs=-1", r"epochs=-1 is not allowed: it must be a positive integer"),
        ("optimizer.lr=0", r"optimizer.lr=0.0 is not allowed: it must be > 0, e.g. optimizer.lr=0.01"),
        ("data.train_subset=0", r"data.train_subset=0 .* positive integer or null"),
        ("augmentation.resize=200", r"augmentation.resize=200 with crop=true: .* >= "
                                    r"model.input_size \(227\)"),
        ("device=tpu", r"device='tpu' is not a device: use auto, cpu, cuda"),
        ("speed.compile=maybe", r"speed.compile='maybe': choose auto, true or false"),
    ],
)
def test_bad_values_are_refused_with_what_is_allowed(override, message):
    with pytest.raises(ConfigError, match=message):
        validate(compose_config(override))


def test_unknown_group_option_lists_the_choices():
    with pytest.raises(MissingConfigException, match=r"(?s)optimizer/nope.*adam.*sgd"):
        compose_config("optimizer=nope")



@pytest.mark.parametrize(("preset", "target"), [("parallel", "ParallelLauncher"),
                                                ("slurm", "SlurmLauncher")])
def test_launcher_presets_compose_with_their_values(preset, target):

    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"hydra/launcher={preset}"],
                      return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith(target)
    if preset == "parallel":  # null: one per GPU slot (GPUs x jobs_per_gpu), or 2 without a GPU
        assert launcher.n_jobs is None and launcher.jobs_per_gpu == 1
    else:
        assert launcher.max_num_timeout > 0 and launcher.gpus_per_task == 1
        assert launcher.submitit_folder == f"{cfg.hydra.sweep.dir}/.submitit/%j"


@pytest.mark.parametrize("logger", ["none", "tensorboard", "mlflow", "all"])
def test_logger_options_compose(logger):
    cfg = compose_config(f"logger={logger}")
    expected = {"none": set(), "tensorboard": {"tensorboard"}, "mlflow": {"mlflow"},
                "all": {"mlflow", "tensorboard"}}[logger]
    assert set(cfg.get("logger") or {}) == expected


@pytest.mark.parametrize(("override", "message"), [
    ("checkpoint.keep=al", r"Invalid value 'al', expected one of \[weights, full, best, none\]"),
    ("early_stop.mode=up", r"Invalid value 'up', expected one of \[auto, max, min\]"),
    ("early_stop.monitor=acc", r"expected one of \[auto, test_acc, test_loss"),
    ("early_stop.patience=abc", r"Value 'abc' of type 'str' could not be converted to Integer"),
    ("hydra/launcher=parallel hydra.launcher.jobs_per_gpu=two", r"could not be converted to Integer"),
    ("batch_size=abc", r"Value 'abc' of type 'str' could not be converted to Integer"),
    ("seed=abc", r"could not be converted to Integer\s+full_key: seed"),
    ("optimizer.momentum=abc", r"could not be converted to Float\s+full_key: optimizer.momentum"),
    ("optimizer=adam optimizer.betas=abc", r"full_key: optimizer.betas"),
    ("data.pipeline=dali", r"Invalid value 'dali', expected one of \[tensor, torchvision\]"),
    ("speed.autocast=int8", r"Invalid value 'int8', expected one of \[auto, bf16, fp16, fp32\]"),
    ("augmentation.flip=maybe", r"'maybe' is not a valid bool .*\s+full_key: augmentation.flip"),
    ("model=alexnet_cifar model.hidden_batchnorm=abc", r"full_key: model.hidden_batchnorm"),
    ("logger=mlflow logger.mlflow.experiment=[1]", r"full_key: logger.mlflow.experiment"),
])
def test_wrong_types_and_choices_are_refused_at_composition_naming_the_key(override, message):
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException) as caught:
        compose_config(*override.split())
    assert re.search(message, str(caught.value.__cause__)), caught.value.__cause__


@pytest.mark.parametrize(("override", "message"), [
    ("early_stop.patience=-2", "early_stop.patience=-2 is not allowed: it must be a positive "
                               "integer or null, e.g. early_stop.patience=3"),
    ("early_stop.min_delta=-1", "early_stop.min_delta=-1.0: must be >= 0"),
    ("heartbeat_s=0", "heartbeat_s=0.0: must be a number of seconds > 0"),
    ("torch_threads=-2", "torch_threads=-2 is not allowed"),
    ("objective=accuracy", "objective=accuracy is not a score a run records: use auto"),
    ("objective=[test_acc,val_loss]", "objective=val_loss needs a validation split: add data.val_split=N"),
])
def test_run_control_ranges_are_checked_before_training(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        validate(compose_config(override))
