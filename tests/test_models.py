import pytest
import torch
from torch import nn

from alexnet.models import AlexNet, AlexNetCifar, build_model


def test_alexnet_is_the_notebooks_network():
    model = AlexNet()
    x = torch.randn(2, 3, 227, 227)
    features = model.features(x)
    assert features.shape == (2, 256, 6, 6)  # 256 * 6 * 6 = 9216
    linears = [m for m in model.classifier if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (9216, 4096), (4096, 4096), (4096, 100)]
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size[0], c.stride[0]) for c in convs] == [
        (96, 11, 4), (256, 5, 1), (384, 3, 1), (384, 3, 1), (256, 3, 1)]
    assert isinstance(model.features[1], nn.BatchNorm2d)
    assert [m.p for m in model.classifier if isinstance(m, nn.Dropout)] == [0.5, 0.5]
    assert model(x).shape == (2, 100)


def test_alexnet_cifar_takes_native_32x32_images():
    model = AlexNetCifar()
    assert model(torch.randn(3, 3, 32, 32)).shape == (3, 100)


@pytest.mark.parametrize("name", ["alexnet", "alexnet_cifar"])
def test_logit_relu_restores_the_notebooks_non_negative_logits(name):
    size = 227 if name == "alexnet" else 32
    torch.manual_seed(0)
    x = torch.randn(4, 3, size, size)
    fixed = build_model(name, input_size=size).eval()
    notebook = build_model(name, input_size=size, logit_relu=True).eval()
    notebook.load_state_dict(fixed.state_dict())
    assert (fixed(x) < 0).any()
    assert torch.equal(notebook(x), fixed(x).relu())


def test_first_layer_batchnorm_is_a_switch():
    without = AlexNet(first_batchnorm=False)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in without.modules())


def test_unknown_model_names_the_choices():
    with pytest.raises(ValueError, match=r"choose one of \['alexnet', 'alexnet_cifar'\]"):
        build_model("vgg")


def test_hidden_batchnorm_is_a_switch_of_the_cifar_network():
    def count(model):
        return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())

    assert count(AlexNetCifar()) == 5
    assert count(AlexNetCifar(hidden_batchnorm=False)) == 1
    assert count(AlexNetCifar(hidden_batchnorm=False, first_batchnorm=False)) == 0
