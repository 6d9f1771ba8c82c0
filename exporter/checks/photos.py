"""Real photographs as model inputs, for parity checks and FP16/INT8 calibration.

The pixels come from ``runtimes.images`` (the one preprocessing every tool
shares, edge apps included); this module fills a model's inputs with them:
every image input gets the photos (the second one sees them rolled by one, so
two image inputs never see the same picture), other inputs seeded noise.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Sequence

import numpy as np

from runtimes.images import Preprocess, image_preprocess, is_image_input, load_batch, sample_photo_files
from runtimes.specs import TensorSpec, random_inputs


@functools.lru_cache(maxsize=4)
def sample_photos(preprocess: Preprocess) -> np.ndarray:
    """[5, 3, H, W] float32 of the bundled photographs through ``preprocess`` (cached, read-only)."""
    return load_batch(sample_photo_files(), preprocess)


def image_size(specs: Sequence[TensorSpec]) -> tuple[int, int] | None:
    """(H, W) of the model's first image input, or ``None`` when it takes no images."""
    image = next((s for s in specs if is_image_input(s)), None)
    return (int(image.shape[2]), int(image.shape[3])) if image else None


def model_preprocess(specs: Sequence[TensorSpec], recorded: Preprocess | None) -> Preprocess | None:
    """The preprocessing of the model's first image input (``recorded`` where it fits), ``None`` without one."""
    image = next((s for s in specs if is_image_input(s)), None)
    return image_preprocess(image, recorded) if image else None


def with_images(specs: Sequence[TensorSpec], images: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Inputs for ``len(images)`` rows: ``images`` in every image input, seeded noise elsewhere."""
    arrays = random_inputs(specs, len(images), seed=seed)
    for shift, spec in enumerate(s for s in specs if is_image_input(s)):
        arrays[spec.name] = np.roll(images, shift, axis=0)
    return arrays


def photo_inputs(specs: Sequence[TensorSpec], seed: int, files: Sequence[Path] | None = None,
                 preprocess: Preprocess | None = None) -> dict[str, np.ndarray] | None:
    """The bundled photos (or ``files``) as inputs, through the model's ``preprocess`` (default: a resize to
    the input size); ``None`` when the model takes no images."""
    config = model_preprocess(specs, preprocess)
    if config is None:
        return None
    images = load_batch(files, config) if files is not None else sample_photos(config)
    return with_images(specs, images, seed)
