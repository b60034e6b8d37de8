"""The notebook's AlexNet (227x227) and a cheap AlexNet-family network for native 32x32 input."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from torch import nn


def _conv(c_in: int, c_out: int, kernel: int, stride: int = 1, padding: int = 0,
          batchnorm: bool = False) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, kernel, stride, padding), *([nn.BatchNorm2d(c_out)] if batchnorm else []),
            nn.ReLU(inplace=True)]


def _classifier(in_features: int, hidden: int, num_classes: int, dropout: float,
                logit_relu: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Linear(in_features, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
                               nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
                               nn.Linear(hidden, num_classes)]
    if logit_relu:  # the notebook's bug: zeroed negative logits can stall a run at loss ln(100)
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class AlexNet(nn.Sequential):
    """AlexNet exactly as the notebook built it: 227 -> 256x6x6 = 9216 -> 4096 -> 4096 -> classes."""

    def __init__(self, input_size: int = 227, num_classes: int = 100, dropout: float = 0.5,
                 first_batchnorm: bool = True, logit_relu: bool = False) -> None:
        features = nn.Sequential(
            *_conv(3, 96, 11, stride=4, batchnorm=first_batchnorm), nn.MaxPool2d(3, 2),
            *_conv(96, 256, 5, padding=2), nn.MaxPool2d(3, 2),
            *_conv(256, 384, 3, padding=1),
            *_conv(384, 384, 3, padding=1),
            *_conv(384, 256, 3, padding=1), nn.MaxPool2d(3, 2),
        )
        side = input_size
        for kernel, stride in ((11, 4), (3, 2), (3, 2), (3, 2)):  # conv1 and the three pools
            side = (side - kernel) // stride + 1
        if side < 1:
            raise ValueError(f"AlexNet needs input_size >= 67, got {input_size}")
        super().__init__(OrderedDict(features=features, flatten=nn.Flatten(), classifier=_classifier(
            256 * side * side, 4096, num_classes, dropout, logit_relu)))


class AlexNetCifar(nn.Sequential):
    """AlexNet's shape for 32x32 input on a CPU; `hidden_batchnorm` (convolutions 2-5) lets plain SGD
    at the notebook's lr leave chance level within the first epoch, as a few-epoch CPU budget needs."""

    def __init__(self, input_size: int = 32, num_classes: int = 100, dropout: float = 0.5,
                 first_batchnorm: bool = True, hidden_batchnorm: bool = True,
                 logit_relu: bool = False) -> None:
        if input_size % 8:
            raise ValueError(f"AlexNetCifar needs input_size divisible by 8, got {input_size}")
        bn = hidden_batchnorm
        features = nn.Sequential(
            *_conv(3, 64, 3, padding=1, batchnorm=first_batchnorm), nn.MaxPool2d(2),
            *_conv(64, 128, 3, padding=1, batchnorm=bn), nn.MaxPool2d(2),
            *_conv(128, 256, 3, padding=1, batchnorm=bn),
            *_conv(256, 256, 3, padding=1, batchnorm=bn),
            *_conv(256, 128, 3, padding=1, batchnorm=bn), nn.MaxPool2d(2),
        )
        side = input_size // 8
        super().__init__(OrderedDict(features=features, flatten=nn.Flatten(), classifier=_classifier(
            128 * side * side, 512, num_classes, dropout, logit_relu)))


MODELS: dict[str, type[nn.Module]] = {"alexnet": AlexNet, "alexnet_cifar": AlexNetCifar}


def build_model(name: str, **options: Any) -> nn.Module:
    """`options` are the constructor arguments of the model a `model/` config names."""
    if name not in MODELS:
        raise ValueError(f"unknown model '{name}'; choose one of {sorted(MODELS)}")
    return MODELS[name](**options)


def from_config(model: Mapping[str, Any]) -> nn.Module:
    """Every key but `name` and `crop_resize` (an input-pipeline setting) is a constructor argument."""
    return build_model(str(model["name"]),
                       **{k: v for k, v in model.items() if k not in ("name", "crop_resize")})
