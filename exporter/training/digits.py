"""Train a zoo model on real data that is available offline: scikit-learn's bundled handwritten digits
(1,797 8×8 scans from UCI, 10 classes), so FP16/INT8/BF16 can be measured on a trained network.

The digits are written as an ImageFolder of 8×8 PNGs (``digits/train/<class>/``, ``digits/val/<class>/``,
a fixed stratified 80/20 split) and read back through ``runtimes.images`` — the one preprocessing,
which upscales them to the model's input size in RGB, ImageNet-normalised — for training as for
``--calib``, ``--eval`` and ``attn-bench --data``. ``scripts/train_digits.py`` is the command.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import nn

from exporter.export_model import ExportModel
from exporter.zoo import create_model
from runtimes.bench.labels import LabelledImages, image_folder
from runtimes.errors import OptionError
from runtimes.images import Preprocess, is_image_input, load_batch
from runtimes.specs import random_inputs

CLASSES = 10
VAL_FRACTION = 0.2
SPLIT_SEED = 0


def write_digits(root: Path) -> tuple[LabelledImages, LabelledImages]:
    """``root/train/<class>/*.png`` and ``root/val/<class>/*.png`` (written once; the split is fixed)."""
    from PIL import Image
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if not (root / "val").is_dir():
        digits = load_digits()
        pixels = np.clip(digits.images * 16, 0, 255).astype(np.uint8)  # 0..16 → 0..255 grey
        indices = np.arange(len(pixels))
        train, val = train_test_split(indices, test_size=VAL_FRACTION, stratify=digits.target, random_state=SPLIT_SEED)
        for split, chosen in (("train", train), ("val", val)):
            for i in chosen:
                folder = root / split / str(int(digits.target[i]))
                folder.mkdir(parents=True, exist_ok=True)
                Image.fromarray(pixels[i], mode="L").convert("RGB").save(folder / f"{i:04d}.png")
    return image_folder(root / "train"), image_folder(root / "val")


@dataclass(frozen=True)
class TrainResult:
    steps: int
    seconds: float
    val_top1: float


def _feeds(model: ExportModel, images: torch.Tensor, seed: int) -> list[torch.Tensor]:
    """Forward arguments: the images in the image input, seeded data in any other (a cross-attention context)."""
    arrays = random_inputs(model.input_specs, len(images), seed=seed)
    return [images if is_image_input(s) else torch.from_numpy(arrays[s.name]) for s in model.input_specs]


def top1(model: ExportModel, images: np.ndarray, labels: np.ndarray, batch: int = 64) -> float:
    """Held-out top-1 of the PyTorch model in eval mode."""
    model.module.eval()
    correct = 0
    with torch.inference_mode():
        for start in range(0, len(images), batch):
            chunk = torch.from_numpy(np.array(images[start:start + batch]))
            logits = model.module(*_feeds(model, chunk, seed=start))
            correct += int((logits.argmax(1).numpy() == labels[start:start + batch]).sum())
    return correct / len(images)


def zero_init_residuals(module: nn.Module) -> int:
    """Set γ = 0 in the last batch norm of every torchvision ResNet block, so that each block starts as the
    identity (Goyal et al. 2017; torchvision's ``zero_init_residual``) and a deep trunk's output starts at its
    input's scale; returns how many blocks. An initialisation for training, not a change of architecture."""
    from torchvision.models.resnet import BasicBlock, Bottleneck

    blocks = [m for m in module.modules() if isinstance(m, (Bottleneck, BasicBlock))]
    for block in blocks:
        nn.init.zeros_(block.bn3.weight if isinstance(block, Bottleneck) else block.bn2.weight)
    return len(blocks)


def train(name: str, out: Path, *, steps: int = 300, batch: int = 32, lr: float = 3e-3, seed: int = 0,
          model_args: Mapping[str, Any] | None = None, bf16_autocast: bool = False,
          zero_init_residual: bool = False, printer: Callable[[str], None] = print) -> TrainResult:
    """Train zoo model ``name`` (built with ``model_args``, 10 classes) on the digits; write ``out/weights.pt``
    and ``out/digits/``.

    ``bf16_autocast`` runs forward and backward under ``torch.autocast("cpu", bfloat16)`` on channels-last
    tensors (a resnet50_sa step: 19 s → 5 s on an AMX CPU) while the weights and the optimiser stay FP32;
    the held-out top-1 is always measured in FP32. ``zero_init_residual`` starts from
    :func:`zero_init_residuals`: resnet50_kv attends over raw layer4 features, whose scores start at a standard
    deviation of ~190 (a one-hot softmax through which q and k get no gradient) without it."""
    torch.manual_seed(seed)
    model = ExportModel.of(create_model(name, num_classes=CLASSES, **dict(model_args or {})))
    if zero_init_residual and not zero_init_residuals(model.module):
        raise OptionError(f"{name} has no ResNet blocks: zero_init_residual applies to the ResNet-50 models")
    image = next((s for s in model.input_specs if is_image_input(s)), None)
    if image is None:
        raise OptionError(f"{name} takes no image input; the digits train image models only")
    train_set, val_set = write_digits(out / "digits")
    height, width = int(image.shape[2]), int(image.shape[3])
    printer(f"train_digits: {name}, {len(train_set)} train / {len(val_set)} held-out digits at {height}x{width}")
    config = Preprocess.default(height, width)
    train_x, val_x = load_batch(train_set.files, config), load_batch(val_set.files, config)
    rng = np.random.default_rng(seed)
    optimiser = torch.optim.AdamW(model.module.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, total_steps=steps, pct_start=0.2)
    loss_fn = nn.CrossEntropyLoss()
    layout = torch.channels_last if bf16_autocast else torch.contiguous_format
    model.module.to(memory_format=layout)
    began = time.perf_counter()
    model.module.train()
    for step in range(steps):
        chosen = rng.choice(len(train_x), size=batch, replace=False)
        images = torch.from_numpy(train_x[chosen]).contiguous(memory_format=layout)  # fancy indexing copies
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16_autocast):
            logits = model.module(*_feeds(model, images, seed=step))
        loss = loss_fn(logits.float(), torch.from_numpy(train_set.labels[chosen]))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        if (step + 1) % 25 == 0 or step + 1 == steps:
            printer(f"train_digits: step {step + 1}/{steps} loss {loss.item():.3f} "
                    f"({time.perf_counter() - began:.0f}s)")
    seconds = time.perf_counter() - began
    model.module.to(memory_format=torch.contiguous_format)
    result = TrainResult(steps, seconds, top1(model, val_x, val_set.labels))
    out.mkdir(parents=True, exist_ok=True)
    torch.save(model.module.state_dict(), out / "weights.pt")
    printer(f"train_digits: {name}: held-out FP32 top-1 {100 * result.val_top1:.2f}% on {len(val_set)} digits "
            f"after {steps} steps in {seconds:.0f}s{' (BF16 autocast)' if bf16_autocast else ''} "
            f"→ {out / 'weights.pt'}")
    return result
