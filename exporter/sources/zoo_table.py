"""The ``attn-export --list`` table: name, package (the zoo's or a plugin's), seed, inputs, parameters, GFLOPs."""
from __future__ import annotations

from exporter import flops
from exporter.export_model import complete_input_specs
from exporter.zoo import create_model, get_entry, list_models


def model_row(name: str) -> dict[str, object]:
    """One row: parameters at 1000 classes, GFLOPs (2·MAC) of one sample at the default input size (``None``
    for a plugin model without ``input_specs``, which exports with --input)."""
    module = create_model(name)
    entry = get_entry(name)
    specs = complete_input_specs(getattr(module, "input_specs", None) or ())
    gflops = flops.count(module, specs)[0] / 1e9 if specs else None
    inputs = ", ".join(f"{s.name} {s.dtype} [{','.join(map(str, s.shape))}]" for s in specs) or "(give --input)"
    return {
        "name": name,
        "package": entry.package,
        "seed": entry.seed,
        "inputs": inputs,
        "parameters": sum(p.numel() for p in module.parameters()),
        "gflops": gflops,
        "summary": entry.summary,
    }


def zoo_table() -> list[dict[str, object]]:
    return [model_row(n) for n in list_models()]


def format_table(rows: list[dict[str, object]]) -> str:
    head = f"{'model':<21} {'package':<14} {'seed':<14} {'parameters':>12} {'GFLOPs':>7}  inputs"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['name']:<21} {r['package']:<14} {r['seed']:<14} {r['parameters']:>12,} "
            f"{'-' if r['gflops'] is None else format(r['gflops'], '.2f'):>7}  {r['inputs']}"
        )
    return "\n".join(lines)


def format_markdown(rows: list[dict[str, object]]) -> str:
    """The docs' zoo table (docs/zoo.md holds exactly this; tests/test_export.py checks it)."""
    lines = ["| model | seed | parameters | GFLOPs | inputs |", "|---|---|---:|---:|---|"]
    for r in rows:
        gflops = "–" if r["gflops"] is None else format(r["gflops"], ".2f")
        lines.append(f"| {r['name']} | {r['seed']} | {r['parameters']:,} | {gflops} | {r['inputs']} |")
    return "\n".join(lines)
