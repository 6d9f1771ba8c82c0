"""Image preprocessing, written once: parity photos, INT8 calibration and edge apps all use it.

An image becomes what every zoo image input expects: RGB, resized to the
input's H×W (bilinear, antialiased, Pillow), scaled to [0, 1] and normalised
with the ImageNet mean and std, laid out [3, H, W] float32. Needs Pillow (a
dependency of every install), not torch.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .errors import ArtifactError
from .specs import TensorSpec

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
SAMPLE_DIR = Path(__file__).parent / "sample_photos"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def is_image_input(spec: TensorSpec) -> bool:
    """A float [batch, 3, H, W] input with fixed H and W takes photographs."""
    return (len(spec.shape) == 4 and spec.shape[1] == 3 and spec.dtype == "float32"
            and isinstance(spec.shape[2], int) and isinstance(spec.shape[3], int))


def preprocess(path: str | os.PathLike[str], height: int, width: int) -> np.ndarray:
    """One image file → [3, H, W] float32, ImageNet-normalised."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            rgb = img.convert("RGB").resize((width, height), Image.Resampling.BILINEAR)
    except (OSError, UnidentifiedImageError) as exc:
        raise ArtifactError(f"cannot read image {path}: {exc}") from None
    pixels = np.asarray(rgb, dtype=np.float32) / 255.0
    return ((pixels - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1).copy()


def image_files(folder: str | os.PathLike[str]) -> list[Path]:
    """Image files in ``folder`` and its subfolders (an ImageFolder's class folders), sorted, or a clear
    error when there are none."""
    root = Path(folder)
    if not root.is_dir():
        raise ArtifactError(f"image folder {root} does not exist")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise ArtifactError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {root}")
    return files


def sample_photo_files() -> list[Path]:
    """The five photographs shipped with ``runtimes`` (see sample_photos/README.md)."""
    return image_files(SAMPLE_DIR)


def load_batch(files: Sequence[str | os.PathLike[str]] | Iterable[Path], height: int, width: int) -> np.ndarray:
    """[N, 3, H, W] float32 of ``files``, read-only so shared batches cannot be changed by a caller."""
    batch = np.stack([preprocess(f, height, width) for f in files])
    batch.flags.writeable = False
    return batch
