"""``ExportContext``: what every export stage reads and writes — the staging folder, the manifest, the
options, the printer and the parity reports — with ``check`` (an artifact against PyTorch, and on the
labelled images of ``--eval``) and the three ways a stage reports back: ``add_artifact``,
``record_parity`` and ``fail``."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import torch

from exporter import onnx_files
from exporter.checks.crash_probe import crash_on_open
from exporter.checks.parity import ParityReport, Tolerance
from exporter.checks.references import (
    ParityInputs,
    candidate_device,
    check_parity,
    labelled_sets,
    open_candidate,
    parity_batches,
    unopenable_report,
)
from exporter.errors import ParityError
from exporter.export_model import ExportModel
from exporter.formats.int8 import Calibration
from exporter.options import ExportOptions
from exporter.progress import Printer, Stages
from runtimes import manifest as mf
from runtimes.bench.accuracy import Accuracy, evaluate
from runtimes.bench.labels import LabelledImages
from runtimes.errors import ArtifactError, AttnExportError
from runtimes.fileio import write_json


@dataclass
class ExportContext:
    """One export in progress. Stages fill the later fields (``example``, ``program``, ``sets``) in order."""

    folder: Path
    model: ExportModel
    options: ExportOptions
    exporter: str
    manifest: dict[str, Any]
    printer: Printer
    timer: Stages
    exporters: tuple[str, ...] = ()  # the exporters the FP32 ONNX stage tries, in order (``exporter`` is the current)
    samples: dict[str, np.ndarray] | None = None  # the user's --sample-inputs
    calib_arrays: dict[str, np.ndarray] | None = None  # --calib FILE.npz
    labelled: LabelledImages | None = None  # --eval DIR
    reports: dict[str, Any] = field(default_factory=dict)
    example: tuple[torch.Tensor, ...] = ()
    program: torch.export.ExportedProgram | None = None
    sets: list[ParityInputs] = field(default_factory=list)
    labelled_sets: list[ParityInputs] = field(default_factory=list)  # see calibrated_sets
    calibration: Calibration | None = None  # INT8 calibration data, made once for the ONNX and .pte INT8 stages
    fp32_accuracy: Accuracy | None = None  # the FP32 ONNX on --eval's images: what other precisions are held to

    @property
    def label(self) -> str:
        return str(self.manifest["model"])

    @property
    def batches(self) -> list[int]:
        """The batch sizes every parity check runs at (``references.parity_batches`` of the profile)."""
        return parity_batches(self.options.batch)

    def path(self, key: str) -> Path:
        """The file of a finished artifact, by manifest key."""
        return self.folder / self.manifest["artifacts"][key]

    def add_artifact(self, key: str, path: Path) -> None:
        """List a finished artifact and record its size and SHA-256."""
        self.manifest["artifacts"][key] = path.name
        mf.record_file(self.manifest, self.folder, path.name)

    def add_onnx_artifact(self, key: str, path: Path) -> None:
        """List a finished ONNX file and, when its weights are external (``onnx_files``), its data file as
        ``KEY_data`` (the manifest's companion, verified and copied with it); a rewrite that went inline drops
        the data entry."""
        self.add_artifact(key, path)
        data = path.with_name(onnx_files.data_name(path))
        if data.is_file():
            self.add_artifact(f"{key}_data", data)
        elif f"{key}_data" in self.manifest["artifacts"]:
            self.manifest["files"].pop(self.manifest["artifacts"].pop(f"{key}_data"), None)

    def check(self, path: Path, engine: str, tolerance: Tolerance, precision: str | None = None,
              calibrated: bool = False) -> ParityReport:
        """``path`` against the PyTorch references and, with ``--eval``, its accuracy on the labels (the first
        file checked, the FP32 ONNX, is the accuracy reference). A ``calibrated`` artifact (INT8) is compared
        on ``calibrated_sets()``, every other one on ``sets``."""
        sets = self.calibrated_sets() if calibrated else self.sets
        if engine == "ort" and path.name != "model.onnx":  # a converter's file: AutoCast's, ModelOpt's, .ort
            crash = crash_on_open(path, engine, candidate_device(engine))
            if crash is not None:
                return unopenable_report(path, engine, crash, sets, tolerance)
        try:
            opened = open_candidate(path, engine, precision)
        except Exception as exc:  # ArtifactError, or an engine's own exception type while compiling our file
            if isinstance(exc, AttnExportError) and not isinstance(exc, ArtifactError):
                raise  # a missing engine or a bad option is the user's to fix, not this file's
            return unopenable_report(path, engine, exc, sets, tolerance)
        with opened as candidate:
            report = check_parity(candidate, sets, tolerance)
            if self.labelled is not None:
                reference = self.fp32_accuracy.predictions if self.fp32_accuracy else None
                scored = evaluate(candidate, self.labelled, reference=reference, batch=self.options.batch.max)
                self.fp32_accuracy = self.fp32_accuracy or scored
                report.accuracy = {**scored.to_json(), "drop_points": self.accuracy_drop(scored.top1)}
        return report

    def calibrated_sets(self) -> list[ParityInputs]:
        """``--eval``'s in-distribution set (``references.labelled_sets``), made on the first calibrated check
        so an export without INT8 never runs PyTorch on it; ``sets`` without ``--eval``."""
        if self.labelled is None:
            return self.sets
        if not self.labelled_sets:
            self.labelled_sets = labelled_sets(self.model, self.labelled, self.options.seed)
        return self.labelled_sets

    def accuracy_drop(self, top1: float) -> float:
        """Points of top-1 lost against the FP32 ONNX on the labels (0 for the FP32 ONNX itself)."""
        return round(100 * (self.fp32_accuracy.top1 - top1), 4) if self.fp32_accuracy else 0.0

    def accepts(self, report: ParityReport) -> bool:
        """Parity holds, and with ``--max-accuracy-drop`` the top-1 drop on the labels is within it."""
        limit = self.options.max_accuracy_drop
        return bool(report) and (limit is None or report.accuracy is None or report.accuracy["drop_points"] <= limit)

    def record_parity(self, key: str, what: str, report: ParityReport, required: bool = True, **extra: Any) -> None:
        """Store ``report`` under ``key`` in parity.json and the manifest and print it; a failed ``required``
        check fails the export (exit 3). A check that is not required (a runtime precision such as
        OpenVINO BF16) is recorded, and loaders read it."""
        self.reports[key] = {**report.to_json(), **extra}
        write_json(self.folder / "parity.json", self.reports)
        self.add_artifact("parity", self.folder / "parity.json")
        passed = self.accepts(report)
        self.manifest["parity"][key] = {"passed": passed, "worst": report.worst, "batches": list(self.batches),
                                        **({"accuracy": report.accuracy} if report.accuracy else {})}
        self.printer(report.table())
        if report.accuracy and self.labelled is not None:
            acc = report.accuracy
            self.printer(f"{what} on {self.labelled.source}: top-1 "
                         f"{100 * acc['top1']:.2f}%, top-5 {100 * acc['top5']:.2f}%, agreement with FP32 "
                         f"{100 * acc['agreement_top1']:.2f}%, drop {acc['drop_points']:.2f} points")
        if not report and required and report.errors:
            self.fail(f"{what} parity failed: the engine raised",
                      f"{what}: the engine raised during the parity check: {report.errors[0]}; see "
                      f"{self.folder / 'parity.json'}")
        if not report and required:
            self.fail(f"{what} parity failed",
                      f"{what} disagrees with PyTorch beyond tolerance (worst rel {report.worst['max_rel']:.2e}, "
                      f"cosine {report.worst['min_cosine']:.6f}); see {self.folder / 'parity.json'}")
        if not passed and required:
            self.fail(f"{what} accuracy drop",
                      f"{what} loses {report.accuracy['drop_points']:.2f} points of top-1 against FP32 on "  # type: ignore[index]
                      f"{self.labelled.source if self.labelled else 'the labels'}, more than --max-accuracy-drop "
                      f"{self.options.max_accuracy_drop:g}; see {self.folder / 'parity.json'}")

    def discard_stage_artifacts(self, before: dict[str, str]) -> None:
        """Remove the files a failed stage added since ``before`` (the manifest's artifacts then), so only
        artifacts that passed are published; its parity rows stay, as the record of why."""
        for key in set(self.manifest["artifacts"]) - set(before):
            name = self.manifest["artifacts"].pop(key)
            self.manifest["files"].pop(name, None)
            (self.folder / name).unlink(missing_ok=True)
        self._clear_failed_status()

    def record_failure(self, stage: str, failure_class: str, reason: str) -> None:
        """A stage that failed (or was skipped) under ``--keep-going``: into the manifest's ``failures``."""
        self.manifest.setdefault("failures", []).append({"stage": stage, "class": failure_class, "reason": reason})
        mf.write_manifest(self.folder, self.manifest)
        self.printer(f"[{self.label}] {stage}: FAILED ({failure_class}): {reason}; --keep-going: the other stages "
                     "still run")

    def reset_after_failed_attempt(self, key: str) -> None:
        """Forget a discarded exporter attempt's parity row and failed status, so the next attempt starts clean
        (the PyTorch references in ``sets`` stay: they do not depend on the exporter)."""
        self.reports.pop(key, None)
        self.manifest["parity"].pop(key, None)
        self.fp32_accuracy = None
        self._clear_failed_status()

    def _clear_failed_status(self) -> None:
        """Undo what ``fail`` wrote (status "failed" and its error): the export goes on."""
        self.manifest.pop("error", None)
        self.manifest["status"] = mf.STATUS_RUNNING
        mf.write_manifest(self.folder, self.manifest)

    def fail(self, status_error: str, message: str) -> NoReturn:
        """Write the manifest with status "failed" and ``status_error``, then raise ``ParityError`` (exit 3)."""
        self.manifest.update(status=mf.STATUS_FAILED, error=status_error)
        mf.write_manifest(self.folder, self.manifest)
        raise ParityError(f"{self.label}: {message}")
