"""The notebook's "Visualize Data" step: `python -m alexnet.show_data [overrides]` saves a grid of
training images before and after the configured augmentation, labelled with their classes."""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from alexnet.cli import run  # noqa: E402
from alexnet.config_checks import ConfigError, validate  # noqa: E402
from alexnet.configs import CONFIG_PATH  # noqa: E402
from alexnet.data.cifar import DataError, load_cifar100  # noqa: E402
from alexnet.data.pipelines import preview  # noqa: E402
from alexnet.resume.stop import refused  # noqa: E402

log = logging.getLogger(__name__)


def to_display(images: torch.Tensor, augmentation: DictConfig) -> torch.Tensor:
    """Float images in [0, 1], HWC, with the normalization undone so colours look true."""
    images = images.float()
    if augmentation.normalize:
        mean = torch.tensor(list(augmentation.mean)).view(1, 3, 1, 1)
        std = torch.tensor(list(augmentation.std)).view(1, 3, 1, 1)
        images = images * std + mean
    return images.clamp(0, 1).permute(0, 2, 3, 1)


def draw_data_grid(before: torch.Tensor, after: torch.Tensor, titles: list[str], path: Path) -> None:
    """Two rows: the stored 32x32 images, and what the network is fed (both as [0, 1] HWC)."""
    count = len(titles)
    fig, axes = plt.subplots(2, count, figsize=(1.8 * count, 4.2), squeeze=False)
    for column, title in enumerate(titles):
        for row, (images, name) in enumerate(((before, "stored"), (after, "augmented"))):
            ax = axes[row][column]
            ax.imshow(images[column].numpy())
            ax.set(xticks=[], yticks=[])
            if row == 0:
                ax.set_title(title, fontsize="small")
            if column == 0:
                ax.set_ylabel(f"{name}\n{tuple(images.shape[1:3])}", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="show_data")
def main(cfg: DictConfig) -> None:
    """An unusable setting or data folder is one error line, and Hydra's folder for it is removed."""
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        validate(cfg)
        if cfg.show_data.images < 1:
            raise ConfigError(f"show_data.images={cfg.show_data.images} is not allowed: it must be a "
                              "positive integer, e.g. show_data.images=8")
        data = load_cifar100(cfg.data.root, cfg.data.download, train_subset=cfg.show_data.images,
                             test_subset=1)
    except (ConfigError, DataError) as err:
        raise refused(str(err), output_dir=out_dir) from None
    torch.manual_seed(cfg.seed)
    before = (data.train.images / 255.0).permute(0, 2, 3, 1)
    after = to_display(preview(data.train.images, cfg), cfg.augmentation)
    titles = [data.classes[label] for label in data.train.labels.tolist()]
    path = out_dir / "data_grid.png"
    draw_data_grid(before, after, titles, path)
    log.info("classes: %s", " ".join(titles))
    log.info("saved %s", path)


if __name__ == "__main__":
    run(main)
