"""Image preprocessing, written once: parity photos, INT8 calibration, ``--eval``, attn-bench and edge apps
all use it.

An image becomes what the model was trained on, as its ``Preprocess`` says (recorded in the manifest's
``preprocess`` and read back by ``runtimes.load``): RGB, resized with the model's interpolation (Pillow),
centre-cropped to the input's H×W, scaled to [0, 1], normalised with the model's mean and std, laid out
[3, H, W] float32. ``Preprocess.default`` is what the zoo and ``file.py`` models use: a plain bilinear resize
to H×W with the ImageNet mean and std. A timm model carries its data config (e.g. 256 px bicubic with crop
0.95); a torchvision model its weights' transforms. Needs Pillow (a dependency of every install), not torch
or timm.
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from runtimes.errors import ArtifactError
from runtimes.specs import TensorSpec

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
SAMPLE_DIR = Path(__file__).parent / "sample_photos"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")
CROP_MODES = ("squash", "center")


@dataclass(frozen=True)
class Preprocess:
    """How an image file becomes one model input (timm's eval transform, in Pillow and numpy).

    ``crop_mode`` ``squash``: resize both sides to ``size / crop_pct``, then centre-crop ``size``;
    ``center``: resize the shorter side to ``min(size) / crop_pct`` keeping the aspect ratio, then
    centre-crop ``size``. ``crop_pct`` 1.0 with ``squash`` is a plain resize to ``size``.
    """

    height: int
    width: int
    interpolation: str = "bilinear"
    crop_pct: float = 1.0
    crop_mode: str = "squash"
    mean: tuple[float, float, float] = tuple(float(v) for v in IMAGENET_MEAN)  # type: ignore[assignment]
    std: tuple[float, float, float] = tuple(float(v) for v in IMAGENET_STD)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.interpolation not in INTERPOLATIONS:
            raise ArtifactError(f"preprocess: interpolation {self.interpolation!r} is not one of "
                                f"{', '.join(INTERPOLATIONS)}")
        if self.crop_mode not in CROP_MODES:
            raise ArtifactError(f"preprocess: crop_mode {self.crop_mode!r} is not one of {', '.join(CROP_MODES)}")
        if not 0 < self.crop_pct <= 1 or self.height < 1 or self.width < 1:
            raise ArtifactError(f"preprocess: need 0 < crop_pct <= 1 and a positive size, got crop_pct "
                                f"{self.crop_pct}, size {self.height}x{self.width}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ArtifactError(f"preprocess: mean and std need 3 values each (std > 0), got {self.mean}, {self.std}")

    @classmethod
    def default(cls, height: int, width: int) -> "Preprocess":
        """The zoo's and ``file.py`` models' preprocessing: bilinear resize to H×W, ImageNet mean/std."""
        return cls(height, width)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Preprocess":
        """The manifest's ``preprocess`` record (``to_json``) → ``Preprocess``; a bad record names its field."""
        try:
            height, width = (int(v) for v in data["size"])
            return cls(height, width, str(data["interpolation"]), float(data["crop_pct"]), str(data["crop_mode"]),
                       tuple(float(v) for v in data["mean"]), tuple(float(v) for v in data["std"]))  # type: ignore[arg-type]
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"manifest 'preprocess' is malformed ({type(exc).__name__}: {exc}); re-export") \
                from None

    def to_json(self) -> dict[str, Any]:
        record = asdict(self)
        record["size"] = [record.pop("height"), record.pop("width")]
        record["resize"] = list(self.resize_size((self.width, self.height)))[::-1] if self.crop_mode == "squash" \
            else f"shorter side {self.shorter_side}"
        record["mean"], record["std"] = list(self.mean), list(self.std)
        return record

    @property
    def shorter_side(self) -> int:
        """``center`` mode: the length the image's shorter side is resized to."""
        return math.floor(min(self.height, self.width) / self.crop_pct + 1e-6)

    def resize_size(self, image_size: tuple[int, int]) -> tuple[int, int]:
        """(width, height) the image of ``image_size`` (width, height) is resized to before the crop."""
        if self.crop_mode == "squash":
            return (math.floor(self.width / self.crop_pct + 1e-6), math.floor(self.height / self.crop_pct + 1e-6))
        w, h = image_size
        short = self.shorter_side
        return (short, int(short * h / w)) if w <= h else (int(short * w / h), short)

    def __call__(self, path: str | os.PathLike[str]) -> np.ndarray:
        """One image file → [3, H, W] float32."""
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as img:
                rgb = img.convert("RGB")
                resample = getattr(Image.Resampling, self.interpolation.upper())
                rgb = rgb.resize(self.resize_size(rgb.size), resample)
        except (OSError, UnidentifiedImageError) as exc:
            raise ArtifactError(f"cannot read image {path}: {exc}") from None
        w, h = rgb.size
        top, left = int(round((h - self.height) / 2.0)), int(round((w - self.width) / 2.0))
        if top < 0 or left < 0:
            raise ArtifactError(f"preprocess: image {path} resized to {w}x{h} is smaller than the crop "
                                f"{self.width}x{self.height}")
        pixels = np.asarray(rgb, dtype=np.float32)[top:top + self.height, left:left + self.width] / 255.0
        mean, std = np.asarray(self.mean, np.float32), np.asarray(self.std, np.float32)
        return ((pixels - mean) / std).transpose(2, 0, 1).copy()


def is_image_input(spec: TensorSpec) -> bool:
    """A float [batch, 3, H, W] input with fixed H and W takes photographs."""
    return (len(spec.shape) == 4 and spec.shape[1] == 3 and spec.dtype == "float32"
            and isinstance(spec.shape[2], int) and isinstance(spec.shape[3], int))


def image_preprocess(spec: TensorSpec, recorded: Preprocess | None = None) -> Preprocess:
    """The preprocessing for image input ``spec``: ``recorded`` (the manifest's) when its size fits the input,
    else ``Preprocess.default`` at the input's H×W."""
    height, width = int(spec.shape[2]), int(spec.shape[3])
    if recorded is not None and (recorded.height, recorded.width) == (height, width):
        return recorded
    return Preprocess.default(height, width)


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


def load_batch(files: Sequence[str | os.PathLike[str]] | Iterable[Path], preprocess: Preprocess) -> np.ndarray:
    """[N, 3, H, W] float32 of ``files`` through ``preprocess``, read-only so shared batches cannot be changed
    by a caller."""
    batch = np.stack([preprocess(f) for f in files])
    batch.flags.writeable = False
    return batch
