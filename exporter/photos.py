"""Real photographs for parity checks: scikit-image's bundled sample images (offline),
resized to the model's input size and normalised as ImageNet models expect."""
from __future__ import annotations

import functools

import numpy as np
import skimage.data
from skimage.transform import resize

PHOTO_NAMES = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry")
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


@functools.lru_cache(maxsize=4)
def sample_photos(height: int = 224, width: int = 224) -> np.ndarray:
    """[N, 3, H, W] float32, ImageNet-normalised, one row per bundled photograph.

    Cached (every parity check and the FP16 calibration use the same photos);
    the array is read-only so no caller can change what the others see.
    """
    batch = []
    for name in PHOTO_NAMES:
        rgb = getattr(skimage.data, name)()[..., :3]
        img = resize(rgb, (height, width), anti_aliasing=True).astype(np.float32)  # [0, 1]
        batch.append(((img - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1))
    photos = np.stack(batch)
    photos.flags.writeable = False
    return photos
