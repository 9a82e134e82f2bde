"""The compress report in words: per-family tables of the classes a solution chose, and the Markdown report."""

from __future__ import annotations

import re
from typing import Any

__all__ = ["family_table", "markdown"]


def _layer_index(name: str) -> str:
    nums = re.findall(r"\.(\d+)\.", "." + name + ".")
    return nums[0] if nums else name


def _class_entry(graph: Any, c: Any, label: Any) -> dict[str, Any]:
    params = c.params or {}
    return {"layers": [label(graph.module_names[i]) for i in c.members], "action": c.action,
            "rank": params.get("rank"), "bits": params.get("bits", 16), "memory": c.memory}


def family_table(graph: Any, solution: Any) -> list[dict[str, Any]]:
    """Per family: its classes as (layer indices, action, rank, bits), and stored / dense memory of those
    classes in the graph's unit; classes across families (a shared input-side factor) in a last row of their
    own."""
    rows = []
    across = [c for c in solution.classes if len({graph.families[i] for i in c.members}) > 1]
    for fam, members in graph.family_members.items():
        mset = set(members)
        classes = [c for c in solution.classes if c.members[0] in mset and c not in across]
        rows.append({
            "family": fam,
            "layers": sum(len(c.members) for c in classes),  # its layers not in a shared-input class
            "dense": int(sum(int(graph.sizes[i]) for c in classes for i in c.members)),
            "stored": int(sum(c.memory for c in classes)),
            "classes": [_class_entry(graph, c, _layer_index) for c in classes],
        })
    if across:  # classes of layers fed one input (q/k/v, gate/up): a shared input-side factor
        rows.append({
            "family": "shared inputs (across families)",
            "layers": sum(len(c.members) for c in across),
            "dense": int(sum(int(graph.sizes[i]) for c in across for i in c.members)),
            "stored": int(sum(c.memory for c in across)),
            "classes": [_class_entry(graph, c, str) for c in across],
        })
    return rows


def markdown(report: dict[str, Any]) -> str:
    s = report["solution"]
    unit = report.get("unit", "parameters")
    budget = report["budget_memory"]
    out = [f"# colorshare compress: {report['model']}", "",
           f"- budget: {report['budget']} = " + ("no limit" if budget is None else f"{budget:,} {unit}")
           + f" ({'-' if report['budget_fraction'] is None else format(report['budget_fraction'], '.1%')} of "
           f"{report['dense_memory']:,} {unit} in {report['layers']} "
           f"layers, {report['dense_parameters']:,} weights)",
           f"- stored: {report['stored_memory']:,} {unit} ({report['stored_fraction']:.1%}"
           + (f"; {report['bits_per_weight']:.3f} bits per weight, scales included" if unit == "bytes" else "")
           + f"); whole model {report['model_memory_before']:,} -> {report['model_memory_after']:,} {unit}",
           f"- solver: {s['backend']}, status {s['status']}, objective {s['objective']:.6g}, bound "
           f"{'-' if s['bound'] is None else format(s['bound'], '.6g')}, gap "
           f"{'-' if s['gap'] is None else format(s['gap'], '.3g')} over {s.get('space', 'every class')}; "
           f"{s['restricted'] or 'full column set'}",
           f"- curvature: {report['curvature']}"
           + (f" (probes and measured classes on {report['probe_tokens']:,} tokens)"
              if report.get("probe_tokens") else "")
           + f", trust region {report['trust_region']}"]
    out += [f"- {k}: {v}" for k, v in report.get("case_info", {}).items() if k in ("calibration", "evaluation")]
    heal = report.get("heal")
    if heal:
        out += [f"- healed: {heal['steps']} steps (best at {heal['best_step']}) on {heal['text']}, "
                f"{heal['parameters']:,} parameters trained, {heal['seconds']:.0f} s; before healing "
                + ", ".join(f"{k} {v:.4f}" for k, v in heal["metric_unhealed"].items())]
    skipped = report.get("left_out") or {}
    out += [f"- linear layers left out: {len(skipped)}" + (": " + "; ".join(f"`{n}` ({why})" for n, why in
                                                                         list(skipped.items())[:8]) if skipped else "")
            + (f"; and {len(skipped) - 8} more" if len(skipped) > 8 else "")]
    out += [""]
    out += ["| metric | before | after |", "|---|---|---|"]
    for k, v in report["metric_before"].items():
        out.append(f"| {k} | {v:.4f} | {report['metric_after'][k]:.4f} |")
    out += ["", "| family | layers | stored / dense | classes (layers: action rank) |", "|---|---|---|---|"]
    for row in report["families"]:
        cls = "; ".join(f"{'+'.join(c['layers'])}: {c['action']}{'' if c['rank'] is None else ' ' + str(c['rank'])}"
                        + ("" if c.get("bits", 16) == 16 else f" {c['bits']}b") for c in row["classes"])
        frac = row['stored'] / row['dense'] if row['dense'] else 0.0
        out.append(f"| {row['family']} | {row['layers']} | {frac:.1%} | {cls} |")
    files = report.get("files_bytes") or {}
    if files:
        sizes = ", ".join(f"{k} {v / 2**20:.1f} MiB" for k, v in files.items())
        how = ("colorshare.torch.load_compressed(DIR)" if report.get("folder")
               else "colorshare.torch.load_shared(FILE, fresh_model)")
        out += ["", f"written ({report.get('dtype')}): {sizes}; load with `{how}`"]
        if report.get("metric_after_reload"):
            out.append("reloaded from the written files: " + ", ".join(
                f"{k} {v:.4f}" for k, v in report["metric_after_reload"].items()))
    out += ["", "| step | seconds |", "|---|---|"] + [f"| {k} | {v:.1f} |" for k, v in report["seconds"].items()]
    out += ["", f"peak memory (resident): {report['peak_memory_gib']:.2f} GiB"]
    return "\n".join(out) + "\n"
