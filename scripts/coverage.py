#!/usr/bin/env python
"""The coverage sweep: real backbones through the whole pipeline, one process per model, resumable.

    python scripts/coverage.py --list scripts/coverage_models.txt --out coverage-run --markdown docs/coverage.md
    python scripts/coverage.py timm:vit_tiny_patch16_224 torchvision:swin_t --out /tmp/cov
    python scripts/coverage.py --list scripts/coverage_models.txt --start 46 --out coverage-run   # models 46 on

Each model runs ``attn-export MODEL --keep-going --fp16 --int8 --openvino --ort-format --executorch`` in its own
process with a timeout, at random init (no hub, ``--redraw-zero-weights``: a zero-initialised head would make
every parity row compare constants; a model whose outputs still do not depend on the input fails with class
"constant outputs"), batch profile 1:2:4. Where the FP32 ONNX fails at the
asked opset (--opset, else attn-export's default), FP32 alone is tried at 17, 18, 23, 20 and 13, the asked one left
out, until one passes ("FP32 at some opset"). Each model's
result is written to OUT/results/NAME.json as soon as it is known, and a run started again skips models that
have one (delete the file to redo a model). The export folders are deleted after reading (disk), their manifest,
parity report and export.log kept beside the result. At the end OUT/coverage.json holds every row and
--markdown writes the table with a pass-rate summary, the machine (CPU, ISA flags), the commit and the command.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from exporter.options import ExportOptions  # noqa: E402
from runtimes.machine import machine_info, machine_summary  # noqa: E402

ARTIFACTS = {  # parity key → column title
    "onnx": "FP32 ONNX", "onnx_fp16": "FP16 ONNX", "onnx_int8": "INT8 ONNX", "openvino": "OpenVINO IR",
    "onnx_ort": ".ort", "executorch": "ExecuTorch", "executorch_int8": "ExecuTorch INT8",
}
STAGE_OF = {  # the stage (its name's start) that writes each artifact, as the manifest's failures name it
    "onnx_fp16": "fp16", "onnx_int8": "int8", "openvino": "openvino", "onnx_ort": "ort mobile format",
    "executorch": "executorch .pte", "executorch_int8": "executorch int8",
}
FALLBACK_OPSETS = (17, 18, 23, 20, 13)
PIPELINE = ["--keep-going", "--fp16", "--int8", "--openvino", "--ort-format", "--executorch"]
LEAVE_OUT = {  # --without's choices: the flag left out of PIPELINE, and the artifacts that then read 'not run'
    "fp16": ("--fp16", ("onnx_fp16",)), "int8": ("--int8", ("onnx_int8", "executorch_int8")),
    "openvino": ("--openvino", ("openvino",)), "ort-format": ("--ort-format", ("onnx_ort",)),
    "executorch": ("--executorch", ("executorch", "executorch_int8")),
}


def pipeline_flags(without: list[str]) -> list[str]:
    """``PIPELINE`` less the flags of the stages ``without`` names (``LEAVE_OUT``)."""
    left_out = {LEAVE_OUT[stage][0] for stage in without}
    return [flag for flag in PIPELINE if flag not in left_out]


def read_models(names: list[str], list_file: str | None) -> list[str]:
    models = list(names)
    if list_file:
        for line in Path(list_file).read_text().splitlines():
            entry = line.split("#", 1)[0].strip()
            if entry:
                models.append(entry)
    return list(dict.fromkeys(models))


def folder_name(model: str) -> str:
    return model.replace(":", "__").replace("/", "_")


def run_export(model: str, out: Path, name: str, args: list[str], timeout: float) -> dict[str, Any]:
    """One attn-export process; returns exit code, seconds, whether it timed out or was killed, tracebacks."""
    command = [sys.executable, "-m", "exporter.cli", model, "--out", str(out), "--name", name, "--batch", "1:2:4",
               "--calib-size", "8", "--redraw-zero-weights", *args]
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               start_new_session=True, cwd=ROOT)
    try:
        _, stderr = process.communicate(timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        _, stderr = process.communicate()
        timed_out = True
    lines = [line for line in stderr.splitlines() if line.strip()]
    return {"exit": process.returncode, "seconds": round(time.perf_counter() - start, 1), "timed_out": timed_out,
            "killed": process.returncode == -signal.SIGKILL and not timed_out,
            "traceback": "Traceback (most recent call last)" in stderr, "last_line": lines[-1][:400] if lines else ""}


def read_folder(folder: Path) -> dict[str, Any] | None:
    path = folder / "manifest.json"
    return json.loads(path.read_text()) if path.is_file() else None


def artifact_rows(manifest: dict[str, Any] | None, run: dict[str, Any], without: list[str]
                  ) -> dict[str, dict[str, Any]]:
    """Per artifact: passed, worst errors, and for a failure its class and one-line reason."""
    rows: dict[str, dict[str, Any]] = {}
    failures = (manifest or {}).get("failures", [])
    for key in ARTIFACTS:
        if any(key in LEAVE_OUT[stage][1] for stage in without):
            rows[key] = {"passed": None, "class": "not run", "reason": "left out of this sweep (--without)"}
            continue
        parity = (manifest or {}).get("parity", {}).get(key)
        published = key in (manifest or {}).get("artifacts", {})
        worst = {"max_rel": parity["worst"]["max_rel"], "cosine": parity["worst"]["min_cosine"],
                 "top1": parity["worst"]["min_top1"]} if parity else {}
        constant = (manifest or {}).get("input_independent_outputs")
        if parity and parity["passed"] and published and constant:
            rows[key] = {"passed": False, "checked": True, "class": "constant outputs", **worst,
                         "reason": f"output {', '.join(constant)} is the same for every input: a pass proves nothing"}
            continue
        if parity and parity["passed"] and published and (manifest or {}).get("status") == "ok":
            rows[key] = {"passed": True, "checked": True, **worst}
            continue
        failed = next((f for f in failures if key in STAGE_OF and f["stage"].startswith(STAGE_OF[key])), None)
        if failed:
            cls, reason = failed["class"], failed["reason"]
        elif run["timed_out"]:
            cls, reason = "timeout", f"killed after {run['seconds']:.0f} s"
        elif run["killed"]:
            cls, reason = "memory", "killed by the kernel (SIGKILL): out of memory"
        elif manifest and manifest.get("status") == "failed":
            cls = manifest.get("failure_class", "exporter")
            attempts = [a for a in manifest.get("exporter_attempts", []) if not a["passed"]]
            reason = "; ".join(f"{a['exporter']}: {a['reason']}" for a in attempts) if attempts and key == "onnx" \
                else manifest.get("error", run["last_line"])
            if key != "onnx":
                cls, reason = "not reached", f"the FP32 ONNX failed ({cls})"
        else:
            cls, reason = ("not reached" if key != "onnx" else "exporter"), run["last_line"]
        reason = re.sub(r"; see \S+parity\.json", "", reason).removeprefix(f"{(manifest or {}).get('model')}: ")
        rows[key] = {"passed": False, "class": cls, "reason": reason[:500],
                     "checked": bool(parity) and math.isfinite(parity["worst"]["max_rel"]), **worst}
    return rows


def sweep_one(model: str, out: Path, timeout: float, opset: int | None, without: list[str]) -> dict[str, Any]:
    name = folder_name(model)
    exports, kept = out / "exports", out / "results" / name
    opset_args = ["--opset", str(opset)] if opset else []
    run = run_export(model, exports, name, [*pipeline_flags(without), *opset_args], timeout)
    manifest = read_folder(exports / name)
    kept.mkdir(parents=True, exist_ok=True)
    for file in ("manifest.json", "parity.json", "export.log"):
        if (exports / name / file).is_file():
            shutil.copyfile(exports / name / file, kept / file)
    shutil.rmtree(exports / name, ignore_errors=True)
    shutil.rmtree(exports / f"{name}.failed", ignore_errors=True)
    row: dict[str, Any] = {
        "model": model, "run": run, "artifacts": artifact_rows(manifest, run, without),
        "parameters": (manifest or {}).get("parameters"), "opset": (manifest or {}).get("opset"),
        "exporter": (manifest or {}).get("exporter"), "exporter_attempts": (manifest or {}).get("exporter_attempts"),
        "timings": (manifest or {}).get("timings", {}), "peak_rss_mb": (manifest or {}).get("peak_rss_mb", {}),
        "preprocess": (manifest or {}).get("preprocess"),
        "redrawn_zero_weights": (manifest or {}).get("redrawn_zero_weights", []),
    }
    row["fp32_some_opset"] = row["artifacts"]["onnx"]["passed"] and {"opset": row["opset"]}
    if not row["artifacts"]["onnx"]["passed"] and not run["timed_out"]:
        asked = opset or ExportOptions().opset
        for fallback in FALLBACK_OPSETS:
            if fallback == asked:
                continue
            retry = run_export(model, exports, name, ["--opset", str(fallback)], timeout)
            passed = retry["exit"] == 0
            shutil.rmtree(exports / name, ignore_errors=True)
            if passed:
                row["fp32_some_opset"] = {"opset": fallback}
                break
    return row


def cell(row: dict[str, Any], key: str) -> str:
    entry = row["artifacts"][key]
    if entry["passed"] is None:
        return "not run"
    if entry["passed"]:
        return "pass"
    if entry["class"] == "parity" and entry.get("checked"):
        return f"FAIL (parity: cos {entry['cosine']:.4f}, top-1 {100 * entry['top1']:.0f} %)"
    return f"FAIL ({entry['class']})"


def rate(results: list[bool | None]) -> str:
    """Passes over the models where the artifact was attempted ('not run' when none was)."""
    tried = [r for r in results if r is not None]
    return f"{100 * sum(tried) / len(tried):.1f} % ({sum(tried)}/{len(tried)})" if tried else "not run"


def markdown(rows: list[dict[str, Any]], command: str) -> str:
    machine = machine_info()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    lines = [f"Measured {time.strftime('%Y-%m-%d')} on {machine_summary(machine)}, commit {commit}, with",
             f"`{command}` (random init, batch profile 1:2:4, default opset unless the row says otherwise).", ""]
    header = ["model", "params (M)", *ARTIFACTS.values(), "FP32 at some opset", "slowest stage (s)", "peak RSS (MB)"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        timings = row["timings"] or {"-": 0.0}
        slowest = max(timings, key=timings.get)
        params = f"{row['parameters'] / 1e6:.1f}" if row["parameters"] else "-"
        some = row["fp32_some_opset"]
        rss = max(row["peak_rss_mb"].values(), default=0)
        lines.append(f"| {row['model']} | {params} | " + " | ".join(cell(row, k) for k in ARTIFACTS)
                     + f" | {'opset ' + str(some['opset']) if some else 'FAIL'} | {timings[slowest]:.0f} ({slowest}) "
                       f"| {rss:.0f} |")
    total = len(rows)
    rates = [rate([r["artifacts"][k]["passed"] for r in rows]) for k in ARTIFACTS]
    some_rate = f"{100 * sum(bool(r['fp32_some_opset']) for r in rows) / total:.1f} %"
    lines.append(f"| **pass rate ({total} models)** | | " + " | ".join(rates) + f" | {some_rate} | | |")
    checked = [rate([r["artifacts"][k].get("checked") if r["artifacts"][k]["passed"] is not None else None
                     for r in rows]) for k in ARTIFACTS]
    lines.append("| **written and checked** | | " + " | ".join(checked) + " | | | |")
    tracebacks = [r["model"] for r in rows if r["run"]["traceback"]]
    lines += ["", f"Tracebacks: {len(tracebacks)}{' (' + ', '.join(tracebacks) + ')' if tracebacks else ''}.", "",
              "Failures, one line each:", ""]
    for row in rows:
        for key, entry in row["artifacts"].items():
            if entry["passed"] is False and entry["class"] != "not reached":
                lines.append(f"- {row['model']}, {ARTIFACTS[key]} ({entry['class']}): {entry['reason']}")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="*", help="models (timm:NAME, torchvision:NAME, zoo names, file.py:fn)")
    parser.add_argument("--list", dest="list_file", help="a file of models, one per line ('#' comments)")
    parser.add_argument("--out", default="coverage-run", type=Path, help="results and scratch folder")
    parser.add_argument("--timeout", default=1800.0, type=float, help="seconds per model (default 1800)")
    parser.add_argument("--opset", default=None, type=int, help="opset for the full pipeline (default: attn-export's)")
    parser.add_argument("--markdown", default=None, type=Path, help="also write the Markdown table here")
    parser.add_argument("--report-only", action="store_true",
                        help="run nothing: write coverage.json and --markdown from the results already in OUT "
                             "(models of the list without a result are left out, and counted)")
    parser.add_argument("--start", default=1, type=int, metavar="K",
                        help="begin at the K-th model (1-based): a sweep split over several runs or machines")
    parser.add_argument("--without", action="append", default=[], choices=sorted(LEAVE_OUT),
                        help="leave a stage out of the pipeline (repeatable; its columns then read 'not run'; "
                             "int8 takes ExecuTorch INT8 with it)")
    args = parser.parse_args()
    models = read_models(args.models, args.list_file)[max(args.start, 1) - 1:]
    if not models:
        parser.error("give models or --list FILE")
    (args.out / "results").mkdir(parents=True, exist_ok=True)
    rows = []
    for index, model in enumerate(models, 1):
        result = args.out / "results" / f"{folder_name(model)}.json"
        if result.is_file():  # its artifact cells are re-read from the kept manifest: one rule for every row
            row = json.loads(result.read_text())
            kept = read_folder(args.out / "results" / folder_name(model))
            if kept is not None:
                row["artifacts"] = artifact_rows(kept, row["run"], args.without)
            rows.append(row)
            continue
        if args.report_only:
            continue
        print(f"[{index}/{len(models)}] {model} …", file=sys.stderr, flush=True)
        row = sweep_one(model, args.out, args.timeout, args.opset, args.without)
        result.write_text(json.dumps(row, indent=2))
        passed = [ARTIFACTS[k] for k, v in row["artifacts"].items() if v["passed"]]
        print(f"[{index}/{len(models)}] {model}: {row['run']['seconds']:.0f} s, passed {passed}", file=sys.stderr,
              flush=True)
        rows.append(row)
    (args.out / "coverage.json").write_text(json.dumps(rows, indent=2))
    if args.markdown:
        command = "python scripts/coverage.py " + " ".join(a for a in sys.argv[1:] if a != "--report-only")
        table = markdown(rows, command)
        if len(rows) < len(models):
            table += f"\nNot run yet: {len(models) - len(rows)} of the list's {len(models)} models.\n"
        args.markdown.write_text(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
