"""The stage report of a ProtHash 1.0 student (:mod:`protkit.evaluate.stage_run`): ``stages.json``
(every number) and ``stages.md`` (ProtHash 1.0's table per stage, MLM agreement, pooled cosine,
throughput), each written atomically under the output policy."""

from __future__ import annotations

from pathlib import Path

from protkit.evaluate.stages import stages_markdown
from protkit.io.atomic import write_json, write_text
from protkit.io.outputs import claim_outputs

STAGES_JSON, STAGES_MD = "stages.json", "stages.md"


def rate(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f}"


def throughput_line(metrics: dict) -> str:
    """``Throughput: student X residues/s, Y× the teacher's (Z residues/s) on <device>, ...``."""
    t = metrics["throughput"]
    speedup = "–" if t.get("speedup") is None else f"{t['speedup']:.1f}"
    where = metrics.get("device_name") or metrics.get("device", "?")
    return (f"Throughput: student {rate(t['student']['residues_per_s'])} residues/s, {speedup}× the teacher's "
            f"({rate(t['teacher']['residues_per_s'])} residues/s) on {where}; forward pass and mean pooling over "
            f"the same {t['student']['sequences']:,} proteins ({t['student']['residues']:,} residues) in batches of "
            f"at most {metrics['max_tokens']:,} tokens.")


def stage_report_markdown(metrics: dict) -> str:
    """``stages.md``: a title naming the variant and the teacher, the stage table
    (:func:`~protkit.evaluate.stages.stages_markdown`), the throughput line."""
    lines = [
        f"# {metrics['variant']}: ProtHash 1.0 stages against the teacher {metrics.get('teacher') or '?'}",
        "",
        f"Student {metrics['model_dir']} ({metrics['student_parameters']:,} parameters); {metrics['n_sequences']:,} "
        f"{metrics['split']} proteins, at most {metrics['max_length']:,} tokens each; teacher layers "
        f"{metrics['teacher_layers']} (0-based blocks, from {metrics['teacher_layers_source']}).",
        "",
        *stages_markdown(metrics, metrics["teacher_layers"]),
        throughput_line(metrics),
        "",
    ]
    return "\n".join(lines)


def write_stage_report(metrics: dict, out_dir: str | Path) -> None:
    """Write ``stages.json`` and ``stages.md`` into ``out_dir``."""
    out_dir = Path(out_dir)
    json_path, md_path = out_dir / STAGES_JSON, out_dir / STAGES_MD
    with claim_outputs([json_path, md_path]):
        out_dir.mkdir(parents=True, exist_ok=True)
        write_json(json_path, metrics)
        write_text(md_path, stage_report_markdown(metrics))
