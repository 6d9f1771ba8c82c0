"""Real photographs for parity checks: the sample images scikit-image ships in its
wheel, resized to the model's input size and normalised as ImageNet models expect.

The files are read directly: ``skimage.data.astronaut()`` and friends go
through a fetcher that, when it cannot verify a file, tries to download it and,
under pytest, *skips the calling test* — a silent skip we never want.
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import skimage.data
from skimage.io import imread
from skimage.transform import resize

from runtimes.errors import AttnExportError

PHOTO_FILES = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "ihc.png")
PHOTO_DIR = Path(skimage.data.__file__).parent
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


@functools.lru_cache(maxsize=4)
def sample_photos(height: int = 224, width: int = 224) -> np.ndarray:
    """[N, 3, H, W] float32, ImageNet-normalised, one row per bundled photograph.

    Cached (every parity check and the FP16 calibration use the same photos);
    the array is read-only so no caller can change what the others see.
    """
    batch = []
    for name in PHOTO_FILES:
        path = PHOTO_DIR / name
        if not path.is_file():
            raise AttnExportError(f"sample photo {path} is missing: reinstall scikit-image, or pass --no-photos")
        rgb = imread(path)[..., :3]
        img = resize(rgb, (height, width), anti_aliasing=True).astype(np.float32)  # [0, 1]
        batch.append(((img - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1))
    photos = np.stack(batch)
    photos.flags.writeable = False
    return photos
