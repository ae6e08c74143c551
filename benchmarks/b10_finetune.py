"""B10 fine-tuning on the CPU: the ProtHash student (LoRA and full) against the ESMC teacher (LoRA).

Each variant is the Hugging Face model ``protkit finetune`` trains (``...ForSequenceClassification``
of :mod:`protkit.hf`, two labels), wrapped for LoRA the way ``protkit finetune`` wraps it
(:func:`protkit.finetune.model.add_lora`), with AdamW; a step is forward, loss, backward and
optimizer step on one length-sorted padded batch of real proteins with seeded random labels.

(a) Residues per second: the three variants in one process, interleaved in rotating order, the
    same batch for all in a round (students several times per round, median); the speed-up is the
    median over rounds of the per-round time ratio. Goal: student LoRA >= 30x teacher LoRA.
(b) Peak resident memory: each variant in a fresh process (:mod:`benchmarks.subprocess_peak`), a
    few steps on the same batches, model construction included.

    .venv/bin/python benchmarks/b10_finetune.py            # esmc_300m vs ProtHash-V2-384-Tiny (~1.5 min, 2 cores)
    .venv/bin/python benchmarks/b10_finetune.py --quick    # tiny models, < 1 minute
    .venv/bin/python benchmarks/run_all.py --only B10 --update docs/benchmarks.md
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

from benchmarks.common import (
    QUICK_STUDENT, STUDENT, Goal, Result, Table, device_name, interleaved, length_summary, rate, residues, sample_note,
    sample_proteins, spread, tokenize,
)  # fmt: skip
from benchmarks.subprocess_peak import STATUS, mb, measure
from protkit.finetune.model import add_lora
from protkit.finetune.settings import DEFAULT_LORA_RANK, DEFAULT_LR_FULL, DEFAULT_LR_LORA
from protkit.hf.esmc import ESMCForSequenceClassification, ESMCHFConfig
from protkit.hf.prothash import SETTINGS, ProtHashForSequenceClassification, ProtHashHFConfig
from protkit.models.esmc.model import ESMC_PRESETS, ESMCConfig
from protkit.models.prothash.config import PRESETS, ProtHashConfig
from protkit.sequences.batching import token_budget_batches
from protkit.sequences.tokenize import pad_batch

KEY, TITLE = "B10", "fine-tuning: ProtHash student (LoRA, full) vs ESMC teacher (LoRA), residues/s and peak memory"
GOAL = 30.0  # student LoRA residues/s over the teacher's
NUM_LABELS = 2
STUDENT_LORA, STUDENT_FULL, TEACHER_LORA = "student, LoRA", "student, full", "teacher, LoRA"
VARIANTS = {STUDENT_LORA: ("student", DEFAULT_LORA_RANK), STUDENT_FULL: ("student", None),
            TEACHER_LORA: ("teacher", DEFAULT_LORA_RANK)}  # name -> (model, LoRA rank; None: every weight)


@dataclass(frozen=True)
class Settings:
    teacher: ESMCConfig
    student: ProtHashConfig
    proteins: int
    max_residues: int
    max_tokens: int  # padded tokens per training batch
    rounds: int
    student_repeats: int  # steps per round of each student variant (median kept)
    probe_steps: int  # steps of each fresh-process memory probe


FULL = Settings(ESMC_PRESETS["esmc_300m"], PRESETS[STUDENT], 64, 400, 1024, 3, 5, 1)
QUICK = Settings(ESMCConfig(d_model=64, n_heads=1, n_layers=2), QUICK_STUDENT, 12, 100, 512, 2, 2, 1)


# --- one variant ------------------------------------------------------------------------------
def classifier(role: str, s: Settings, seed: int = 0) -> torch.nn.Module:
    """The sequence classifier of ``role`` (``student``/``teacher``) with seeded random weights."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if role == "teacher":
            return ESMCForSequenceClassification(ESMCHFConfig(**asdict(s.teacher), num_labels=NUM_LABELS))
        settings = {name: getattr(s.student, name) for name in SETTINGS}
        return ProtHashForSequenceClassification(ProtHashHFConfig(**settings, num_labels=NUM_LABELS))


class Trainer:
    """One variant: its model (LoRA-wrapped or not), AdamW, and a training step on a batch."""

    def __init__(self, role: str, rank: int | None, s: Settings) -> None:
        model = classifier(role, s)
        self.model = (add_lora(model, rank) if rank is not None else model).train()
        self.trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        self.total = sum(p.numel() for p in self.model.parameters())
        lr = DEFAULT_LR_LORA if rank is not None else DEFAULT_LR_FULL
        self.optimizer = torch.optim.AdamW([p for p in self.model.parameters() if p.requires_grad], lr=lr)
        self.losses: list[float] = []

    def step(self, tokens: Sequence[Sequence[int]], labels: torch.Tensor) -> None:
        batch = pad_batch(tokens)
        loss = self.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=labels).loss
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.losses.append(float(loss.detach()))


def training_batches(tokens: list[list[int]], max_tokens: int) -> list[list[int]]:
    return token_budget_batches([len(t) for t in tokens], max_tokens)


def seeded_labels(n: int) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(0).integers(0, NUM_LABELS, n))  # (n,)


# --- (b) peak memory in a fresh process -------------------------------------------------------
PROBE = STATUS + """
import json, sys, time
from benchmarks.b10_finetune import probe_steps
imported = status_kb("VmRSS")
start = time.perf_counter()
probe = probe_steps(sys.argv[1], sys.argv[2], sys.argv[3] == "quick")
print(json.dumps({**probe, "seconds": time.perf_counter() - start, "imported_kb": imported,
                  "vmhwm_kb": status_kb("VmHWM")}))
"""


def probe_steps(variant: str, tokens_file: str, quick: bool) -> dict:
    """The probe's work: build ``variant`` and train it for ``probe_steps`` steps on the batches
    of the token lists in ``tokens_file`` (the largest batches first)."""
    s = QUICK if quick else FULL
    tokens = json.loads(Path(tokens_file).read_text())
    labels = seeded_labels(len(tokens))
    trainer = Trainer(*VARIANTS[variant], s)
    for batch in training_batches(tokens, s.max_tokens)[:s.probe_steps]:
        trainer.step([tokens[i] for i in batch], labels[batch])
    return {"losses": trainer.losses}


# --- the benchmark ----------------------------------------------------------------------------
def run(device: torch.device, quick: bool, data_dir: Path) -> Result:
    if device.type != "cpu":
        return Result(KEY, TITLE, device_name(device), status="skipped",
                      message="CPU only: fine-tuning a small student where no GPU is, against the teacher there")
    s = QUICK if quick else FULL
    result = Result(KEY, TITLE, device_name(device))
    tokens = tokenize(sample_proteins(s.proteins, data_dir, max_residues=s.max_residues))
    labels = seeded_labels(len(tokens))
    batches = training_batches(tokens, s.max_tokens)
    trainers = {name: Trainer(role, rank, s) for name, (role, rank) in VARIANTS.items()}

    def runner(trainer: Trainer):
        def run_batches(items: Sequence[int]) -> int:
            for b in items:
                trainer.step([tokens[i] for i in batches[b]], labels[batches[b]])
            return sum(len(batches[b]) for b in items)
        return run_batches

    by_size = sorted(range(len(batches)), key=lambda b: residues(tokens, batches[b]))
    warmup, timed = [by_size[:1]], [[b] for b in by_size[::-1][:s.rounds]]  # the fullest batches
    repeats = {STUDENT_LORA: s.student_repeats, STUDENT_FULL: s.student_repeats}
    timings = interleaved({name: runner(t) for name, t in trainers.items()}, timed, warmup, device, repeats)
    for name, trainer in trainers.items():
        result.require(all(np.isfinite(trainer.losses)), f"{name}: a non-finite loss ({trainer.losses})")

    with tempfile.TemporaryDirectory(prefix="protkit-b10-") as tmp:
        tokens_file = Path(tmp) / "tokens.json"
        tokens_file.write_text(json.dumps(tokens))
        peaks = {name: measure(PROBE, [name, tokens_file, "quick" if quick else "full"], f"B10 memory probe: {name}")
                 for name in VARIANTS}

    timed_residues = [residues(tokens, batches[b]) for [b] in timed]
    table = Table(f"B10 fine-tuning steps, {length_summary(tokens)}, batches of at most {s.max_tokens} padded tokens, "
                  f"{len(timed)} interleaved rounds",
                  ["variant", "model", "trained / all parameters", "residues/s (median round)",
                   "speed-up vs teacher LoRA (median [min-max])", "peak RSS, fresh process"])
    models = {"student": "tiny ProtHash" if quick else STUDENT, "teacher": "tiny ESMC" if quick else "esmc_300m"}
    for name, trainer in trainers.items():
        rates = [n / t for n, t in zip(timed_residues, timings.seconds[name])]
        speedup = "1.00x" if name == TEACHER_LORA else spread(timings.speedups(name, TEACHER_LORA))
        table.rows.append([name, models[VARIANTS[name][0]], f"{trainer.trainable:,} / {trainer.total:,}",
                           rate(statistics.median(rates)), speedup, mb(peaks[name].ru_maxrss_mb)])
    result.tables.append(table)
    result.goals.append(Goal("student LoRA residues/s vs teacher LoRA", GOAL,
                             timings.speedup(STUDENT_LORA, TEACHER_LORA)))
    result.notes += [
        f"Sequences: {sample_note(s.max_residues)} ({s.proteins} of them), seeded random labels (2 classes); the "
        f"{len(timed)} fullest batches timed, one per round, after a warm-up step on the smallest. A step: forward "
        "through the Hugging Face sequence classifier (mean of the residues' last hidden states, a linear head), "
        "cross-entropy, backward, AdamW step.",
        f"LoRA: rank {DEFAULT_LORA_RANK} on every linear layer, the classifier trained whole (protkit finetune's "
        f"default; lr {DEFAULT_LR_LORA}); full: every weight (lr {DEFAULT_LR_FULL}). Students timed "
        f"{s.student_repeats} times per round (median), the teacher once; seeded random weights (ESMC's trained "
        "weights cannot be downloaded here; speed does not depend on them).",
        f"Peak RSS: ru_maxrss of a fresh process that builds the variant and trains {s.probe_steps} step(s) on the "
        "largest batches, as its launcher saw it (torch, transformers and peft loaded; MB of 10^6 bytes). LoRA "
        "saves the optimizer state of the frozen weights, not their activations' memory: the teacher's peak is "
        "its fp32 weights plus the activations kept for the backward pass.",
    ]
    return result


if __name__ == "__main__":
    from benchmarks import common

    raise SystemExit(common.main(sys.modules[__name__]))
