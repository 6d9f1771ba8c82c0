"""``ExportContext``: what every export stage reads and writes — the staging folder, the manifest, the
options, the printer and the parity reports — with the three ways a stage reports back:
``add_artifact``, ``record_parity`` and ``fail``."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np
import torch

from runtimes import manifest as mf
from runtimes._io import write_json

from .errors import ParityError
from .export_model import ExportModel
from .parity import ParityReport
from .progress import Printer, Stages
from .references import ParityInputs

if TYPE_CHECKING:
    from .pipeline import ExportOptions


@dataclass
class ExportContext:
    """One export in progress. Stages fill the later fields (``example``, ``program``, ``sets``) in order."""

    folder: Path
    model: ExportModel
    options: "ExportOptions"
    exporter: str
    manifest: dict[str, Any]
    printer: Printer
    timer: Stages
    samples: dict[str, np.ndarray] | None = None  # the user's --sample-inputs
    calib_arrays: dict[str, np.ndarray] | None = None  # --calib FILE.npz
    reports: dict[str, Any] = field(default_factory=dict)
    example: tuple[torch.Tensor, ...] = ()
    program: torch.export.ExportedProgram | None = None
    batches: list[int] = field(default_factory=list)
    sets: list[ParityInputs] = field(default_factory=list)

    @property
    def label(self) -> str:
        return str(self.manifest["model"])

    def path(self, key: str) -> Path:
        """The file of a finished artifact, by manifest key."""
        return self.folder / self.manifest["artifacts"][key]

    def add_artifact(self, key: str, path: Path) -> None:
        """List a finished artifact and record its size and SHA-256."""
        self.manifest["artifacts"][key] = path.name
        mf.record_file(self.manifest, self.folder, path.name)

    def record_parity(self, key: str, what: str, report: ParityReport, required: bool = True, **extra: Any) -> None:
        """Store ``report`` under ``key`` in parity.json and the manifest and print it; a failed ``required``
        check fails the export (exit 3). A check that is not required (a runtime precision such as
        OpenVINO BF16) is recorded, and loaders read it."""
        self.reports[key] = {**report.to_json(), **extra}
        write_json(self.folder / "parity.json", self.reports)
        self.add_artifact("parity", self.folder / "parity.json")
        self.manifest["parity"][key] = {"passed": bool(report), "worst": report.worst, "batches": list(self.batches)}
        self.printer(report.table())
        if not report and required:
            self.fail(f"{what} parity failed",
                      f"{what} disagrees with PyTorch beyond tolerance (worst rel {report.worst['max_rel']:.2e}, "
                      f"cosine {report.worst['min_cosine']:.6f}); see {self.folder / 'parity.json'}")

    def fail(self, status_error: str, message: str) -> NoReturn:
        """Write the manifest with status "failed" and ``status_error``, then raise ``ParityError`` (exit 3)."""
        self.manifest.update(status=mf.STATUS_FAILED, error=status_error)
        mf.write_manifest(self.folder, self.manifest)
        raise ParityError(f"{self.label}: {message}")
