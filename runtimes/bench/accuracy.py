"""Top-1 / top-5 of a runtime on labelled images, and top-1 agreement between two runtimes.

The images go through ``runtimes.images`` (the one preprocessing) into the model's first image input;
any other input (a cross-attention context) gets the same seeded data for every engine, so two
engines see identical feeds. images/s counts the engine calls only, not image decoding. No torch.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from runtimes.base import Runtime
from runtimes.bench.labels import LabelledImages
from runtimes.errors import OptionError
from runtimes.images import is_image_input, load_batch
from runtimes.specs import random_inputs

TOP_K = 5


@dataclass(frozen=True)
class Accuracy:
    """Fractions 0..1 over ``images`` labelled images; ``predictions`` are the top-1 class per image."""

    top1: float
    top5: float
    images: int
    images_per_s: float
    predictions: np.ndarray
    agreement_top1: float = 1.0  # with the reference engine's top-1 (1.0 for the reference itself)

    def to_json(self) -> dict[str, Any]:
        return {"top1": self.top1, "top5": self.top5, "agreement_top1": self.agreement_top1, "images": self.images,
                "images_per_s": self.images_per_s}


def evaluate(runtime: Runtime, data: LabelledImages, *, batch: int = 32, seed: int = 0,
             reference: np.ndarray | None = None, progress: Callable[[int], None] | None = None) -> Accuracy:
    """Run ``runtime`` over ``data`` in chunks of ``batch``; ``reference`` (top-1 predictions of the FP32
    engine; ``None`` when this runtime is the reference) gives ``agreement_top1``; ``progress(n)`` is called
    after each chunk of n images."""
    specs = runtime.input_specs
    image = next((s for s in specs if is_image_input(s)), None)
    if image is None:
        raise OptionError(f"{runtime.path.name} takes no image input ([batch, 3, H, W] float32): "
                          "accuracy on labelled images needs one")
    logits_name, classes = _logits_output(runtime)
    if int(data.labels.max()) >= classes:
        raise OptionError(f"{data.source}: class index {int(data.labels.max())} but the model has {classes} "
                          "classes; the labels do not belong to this model")
    top1 = top5 = 0
    predictions = []
    seconds = 0.0
    preprocess = runtime.image_preprocess(image)
    for start in range(0, len(data), batch):
        files = data.files[start:start + batch]
        feeds = random_inputs(specs, len(files), seed=seed + start)
        feeds[image.name] = load_batch(files, preprocess)
        began = time.perf_counter()
        logits = runtime(feeds)[logits_name]
        seconds += time.perf_counter() - began
        labels = data.labels[start:start + batch]
        ranked = np.argsort(-logits, axis=1)[:, :TOP_K]
        top1 += int((ranked[:, 0] == labels).sum())
        top5 += int((ranked == labels[:, None]).any(axis=1).sum())
        predictions.append(ranked[:, 0])
        if progress:
            progress(len(files))
    predicted = np.concatenate(predictions)
    agreement = float((predicted == reference).mean()) if reference is not None else 1.0
    return Accuracy(top1 / len(data), top5 / len(data), len(data), len(data) / seconds if seconds else 0.0,
                    predicted, agreement)


def _logits_output(runtime: Runtime) -> tuple[str, int]:
    """The first [batch, classes] output and its class count."""
    for spec in runtime.output_specs:
        if len(spec.shape) == 2 and isinstance(spec.shape[1], int) and spec.shape[1] > 1:
            return spec.name, int(spec.shape[1])
    raise OptionError(f"{runtime.path.name} has no [batch, classes] output to score against labels")
