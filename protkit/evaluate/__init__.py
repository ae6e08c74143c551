"""The evaluate stage (``workflow/rules/evaluate.smk``): a student against its teacher on held-out
proteins (cosine, baselines, neighbour agreement, probes, throughput), its report, and the summary
across variants."""

from protkit.evaluate.probes import ProbeError, ProbeSpec, probe_specs, run_probes
from protkit.evaluate.report import write_report
from protkit.evaluate.results import Evaluation
from protkit.evaluate.run import Split, evaluate, evaluate_variant
from protkit.evaluate.summary import summarize

__all__ = [
    "Evaluation", "ProbeError", "ProbeSpec", "Split", "evaluate", "evaluate_variant", "probe_specs", "run_probes",
    "summarize", "write_report",
]  # fmt: skip
