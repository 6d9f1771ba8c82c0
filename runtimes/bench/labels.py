"""Labelled images for accuracy: an ImageFolder (one subfolder per class, class index = sorted subfolder
order, as torchvision's ``ImageFolder``) or a CSV of ``path,index`` rows. No torch needed."""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtimes.errors import ArtifactError, OptionError
from runtimes.images import IMAGE_SUFFIXES


@dataclass(frozen=True)
class LabelledImages:
    """Image files and their class indices; ``source`` says where they came from (for reports)."""

    files: tuple[Path, ...]
    labels: np.ndarray  # int64, one per file
    classes: tuple[str, ...]
    source: str

    def __len__(self) -> int:
        return len(self.files)


def image_folder(root: str | os.PathLike[str]) -> LabelledImages:
    """``root/<class>/*.png|jpg…``: class index = position of ``<class>`` among the sorted subfolders."""
    folder = Path(root)
    if not folder.is_dir():
        raise ArtifactError(f"labelled image folder {folder} does not exist")
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if not classes:
        raise ArtifactError(f"{folder} has no class subfolders: an ImageFolder is {folder}/<class>/<image>")
    files, labels = [], []
    for index, name in enumerate(classes):
        for path in sorted((folder / name).rglob("*")):
            if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
                files.append(path)
                labels.append(index)
    if not files:
        raise ArtifactError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {folder}/<class>/")
    return LabelledImages(tuple(files), np.asarray(labels, np.int64), tuple(classes), str(folder))


def labels_csv(path: str | os.PathLike[str]) -> LabelledImages:
    """Rows ``path,index`` (paths relative to the CSV's folder; an optional ``path,index`` header)."""
    file = Path(path)
    if not file.is_file():
        raise ArtifactError(f"labels file {file} does not exist")
    files, labels = [], []
    with file.open(newline="") as handle:
        for line, row in enumerate(csv.reader(handle), 1):
            if not row or (line == 1 and [c.strip().lower() for c in row] == ["path", "index"]):
                continue
            if len(row) != 2 or not row[1].strip().isdigit() or not row[0].strip():
                raise OptionError(f"{file}:{line}: expected 'path,index' with a class index >= 0, got {row!r}")
            image = Path(row[0].strip())
            files.append(image if image.is_absolute() else file.parent / image)
            labels.append(int(row[1]))
    if not files:
        raise OptionError(f"{file} has no 'path,index' rows")
    count = max(labels) + 1
    return LabelledImages(tuple(files), np.asarray(labels, np.int64), tuple(str(i) for i in range(count)), str(file))


def load_labelled(data: str | os.PathLike[str] | None = None,
                  labels: str | os.PathLike[str] | None = None) -> LabelledImages:
    """``data`` (an ImageFolder) or ``labels`` (a CSV), exactly one of them."""
    if (data is None) == (labels is None):
        raise OptionError("give labelled images as an ImageFolder (--data DIR) or a CSV (--labels FILE.csv), one of them")
    return image_folder(data) if data is not None else labels_csv(labels)  # type: ignore[arg-type]
