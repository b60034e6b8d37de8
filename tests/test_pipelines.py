"""The tensor pipeline means what the torchvision pipeline means, switch by switch; both continue
exactly from their saved state."""

import struct

import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image
from torchvision.transforms import functional as TF

from alexnet.data import tensor_pipeline, torchvision_pipeline
from alexnet.data.cifar import load_cifar100

GREY_LEVEL = 1 / 255  # torchvision rounds to uint8 after resizing; ours stays in float


def augmentation(crop=True, flip=True, normalize=True, resize=230):
    return OmegaConf.create(dict(crop=crop, flip=flip, normalize=normalize, resize=resize,
                                 mean=[0.4914, 0.4822, 0.4465], std=[0.2023, 0.1994, 0.2010]))


@pytest.fixture(scope="module")
def images(cifar_root):
    return load_cifar100(cifar_root).train.images[:12]


def in_grey_levels(difference, aug):
    return difference.abs() / (GREY_LEVEL / (min(aug.std) if aug.normalize else 1.0))


@pytest.mark.parametrize(("size", "resize"), [(227, 230), (32, 36)])
@pytest.mark.parametrize("crop", [True, False])
@pytest.mark.parametrize("normalize", [True, False])
def test_test_time_transform_matches_torchvision(images, size, resize, crop, normalize):
    aug = augmentation(crop=crop, normalize=normalize, resize=resize)
    reference = torchvision_pipeline.augment_batch(images, aug, size, train=False)
    draws = tensor_pipeline.draw(len(images), aug, size, train=False)
    ours = tensor_pipeline.apply(images, draws, aug, size)
    assert ours.shape == reference.shape == (len(images), 3, size, size)
    grey = in_grey_levels(ours - reference, aug)
    assert grey.max() <= 1.001 and grey.mean() < 0.4


@pytest.mark.parametrize("size", [227, 32])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_random_crop_and_flip_match_torchvision_for_the_same_draws(images, size, memory_format):
    aug = augmentation(resize=size + 4)
    draws = tensor_pipeline.draw(len(images), aug, size, train=True,
                                 generator=torch.Generator().manual_seed(3))
    ours = tensor_pipeline.apply(images, draws, aug, size, memory_format=memory_format)
    assert ours.is_contiguous(memory_format=memory_format)
    for i, image in enumerate(images.permute(0, 2, 3, 1).numpy()):
        pil = TF.resize(Image.fromarray(image), aug.resize)
        pil = TF.crop(pil, int(draws.top[i]), int(draws.left[i]), size, size)
        if draws.flip is not None and draws.flip[i]:
            pil = TF.hflip(pil)
        reference = TF.normalize(TF.to_tensor(pil), list(aug.mean), list(aug.std))
        assert in_grey_levels(ours[i] - reference, aug).max() <= 1.001


def test_random_draws_have_the_right_distribution():
    aug = augmentation(resize=230)
    draws = tensor_pipeline.draw(20_000, aug, 227, train=True,
                                 generator=torch.Generator().manual_seed(0))
    assert 0.48 < draws.flip.float().mean() < 0.52  # p = 0.5, like RandomHorizontalFlip
    for corner in (draws.top, draws.left):  # uniform over 0..3, like RandomCrop(227) of 230
        counts = torch.bincount(corner, minlength=4)
        assert len(counts) == 4 and (counts > 4_600).all()
    test = tensor_pipeline.draw(5, aug, 227, train=False)
    center = (230 - 227 + 1) // 2  # torchvision's CenterCrop: round(1.5) = 2
    assert test.top.tolist() == test.left.tolist() == [center] * 5 and test.flip is None
    plain = tensor_pipeline.draw(5, augmentation(crop=False, flip=False), 227, train=True)
    assert not plain.top.any() and plain.flip is None


def test_batches_cover_the_split_once_per_epoch_in_a_seeded_order(cifar_root):
    split = load_cifar100(cifar_root).train
    aug = augmentation(crop=False, flip=False, normalize=False)

    def epoch(batches):
        return [(x.clone(), y.clone()) for x, y in batches]

    batches = tensor_pipeline.TensorBatches(split, aug, 32, 10, True, torch.device("cpu"), seed=1)
    first, second = epoch(batches), epoch(batches)
    labels = torch.cat([y for _, y in first])
    assert len(batches) == len(first) == 5 and [len(y) for _, y in first][-1] == 8
    assert sorted(labels.tolist()) == sorted(split.labels.tolist())
    assert labels.tolist() != torch.cat([y for _, y in second]).tolist()  # reshuffled
    images = torch.cat([x for x, _ in first])
    # Each served image is a stored image with its own label.
    def key(image):  # the first pixels, in grey levels
        return tuple(image.flatten()[:16].mul(255).round().int().tolist())

    index = {key(img): int(lbl)
             for img, lbl in zip(split.images.float().div(255), split.labels, strict=True)}
    served = [index[key(img)] for img in images]
    assert served == labels.tolist()
    again = tensor_pipeline.TensorBatches(split, aug, 32, 10, True, torch.device("cpu"), seed=1)
    assert all(torch.equal(a, b) for (a, _), (b, _) in zip(first, epoch(again), strict=True))

    test = tensor_pipeline.TensorBatches(split, aug, 32, 16, False, torch.device("cpu"), seed=1)
    assert torch.cat([y for _, y in test]).tolist() == split.labels.tolist()


def test_a_pass_saved_half_way_continues_exactly_and_an_abandoned_one_is_not(cifar_root):
    split = load_cifar100(cifar_root).train
    aug = augmentation(resize=36)

    def make():
        return tensor_pipeline.TensorBatches(split, aug, 32, 10, True, torch.device("cpu"), seed=4)

    reference = [(x.clone(), y.clone()) for x, y in make_passes(make(), 2)]
    batches = make()
    served = []
    for i, (x, y) in enumerate(batches):
        served.append((x.clone(), y.clone()))
        if i == 1:
            state = batches.state_dict()
            break
    resumed = make()
    resumed.load_state_dict(state)
    served += [(x.clone(), y.clone()) for x, y in make_passes(resumed, 2)]
    assert len(served) == len(reference) == 10
    assert all(torch.equal(a, b) and torch.equal(c, d)
               for (a, c), (b, d) in zip(served, reference, strict=True))

    test = tensor_pipeline.TensorBatches(split, aug, 32, 16, False, torch.device("cpu"), seed=1)
    next(iter(test))  # e.g. a sample batch for a compile probe: the next pass is still whole
    assert torch.cat([y for _, y in test]).tolist() == split.labels.tolist()


def make_passes(batches, count):
    return [batch for _ in range(count) for batch in batches]


def test_a_pass_planned_for_another_device_continues_exactly_on_the_cpu(cifar_root, tmp_path):
    """The plan is drawn on the CPU whatever the device (meta stands in for a GPU here: the same
    code, no data), so its state, written to a real file, continues a CPU pipeline exactly."""
    split = load_cifar100(cifar_root).train
    aug = augmentation(resize=36)

    def make(device):
        return tensor_pipeline.TensorBatches(split, aug, 32, 10, True, torch.device(device), seed=4)

    reference = [(x.clone(), y.clone()) for x, y in make_passes(make("cpu"), 2)]
    elsewhere = make("meta")
    batches = iter(elsewhere)
    next(batches), next(batches)  # two batches served there
    torch.save(elsewhere.state_dict(), tmp_path / "state.pt")
    resumed = make("cpu")
    resumed.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    served = reference[:2] + [(x.clone(), y.clone()) for x, y in make_passes(resumed, 2)]
    assert len(served) == len(reference) == 10
    assert all(torch.equal(a, b) and torch.equal(c, d)
               for (a, c), (b, d) in zip(served, reference, strict=True))


def test_a_gpu_generator_state_from_before_continues_with_a_warning(cifar_root, caplog):
    """Checkpoints of GPU runs before the plan was drawn on the CPU hold a CUDA generator's state:
    16 bytes, its seed and offset. The pass goes on from a generator seeded from it."""
    split = load_cifar100(cifar_root).train
    cuda_state = torch.frombuffer(bytearray(struct.pack("<Qq", 4, 4096)), dtype=torch.uint8)

    def passes_after(state):
        batches = tensor_pipeline.TensorBatches(split, augmentation(resize=36), 32, 10, True,
                                                torch.device("cpu"), seed=4)
        batches.load_state_dict({"generator": state.clone()})
        return [y.clone() for _, y in make_passes(batches, 2)]

    first = passes_after(cuda_state)
    assert "not a CPU generator's (16 bytes" in caplog.text
    assert sorted(torch.cat(first[:5]).tolist()) == sorted(split.labels.tolist())
    assert all(torch.equal(a, b) for a, b in zip(first, passes_after(cuda_state), strict=True))


def torchvision_passes(batches, count):
    return [(x.clone(), y.clone()) for x, y in make_passes(batches, count)]


def same_batches(served, reference):
    return len(served) == len(reference) and all(
        torch.equal(a, b) and torch.equal(c, d) for (a, c), (b, d) in zip(served, reference, strict=True))


def test_the_torchvision_pipeline_resumes_exactly_with_workers_and_any_number_of_them(cifar_root,
                                                                                     tmp_path):
    """Persistent workers' own random state drifts from pass to pass and is in no checkpoint:
    each image's crop and flip come from a seed the pass draws for it in the trainer instead."""
    split = load_cifar100(cifar_root).train
    aug = augmentation(resize=36, normalize=False)

    def make(workers):
        return torchvision_pipeline.TorchvisionBatches(split, aug, 32, 16, True, torch.device("cpu"),
                                                       seed=3, num_workers=workers)

    uninterrupted = make(2)
    reference = torchvision_passes(uninterrupted, 3)
    assert not same_batches(reference[:3], reference[3:6])  # each pass draws anew
    first = make(2)
    torchvision_passes(first, 1)
    torch.save(first.state_dict(), tmp_path / "state.pt")  # between passes, as a checkpoint does
    for workers in (2, 0, 1):  # resumed in a new pipeline, with as many workers as this attempt has
        resumed = make(workers)
        resumed.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
        assert same_batches(torchvision_passes(resumed, 2), reference[3:]), workers
    outside = torch.get_rng_state()
    torchvision_passes(make(0), 1)  # in the trainer's own process
    assert torch.equal(torch.get_rng_state(), outside)  # its generator (dropout's) left as it was
