"""Stage-by-stage agreement of a multi-stage student (ProtHash 1.0 style: several stages of
per-residue vectors, each trained to match one teacher layer, plus MLM logits) with its teacher,
streamed batch by batch over the real residues only.

Per stage: mean residue cosine and its 5th percentile (from a fixed histogram of cosines) and
linear CKA (Kornblith et al. 2019) from float64 running sums. For the MLM head: top-1 agreement
and macro-F1 of the student's argmax against the teacher's, from a running confusion matrix.
For the last stage: the cosine of mean-pooled vectors per sequence.

Widths. CKA compares two sets of representations of any widths, so ``student_stages`` may be the
student's native vectors. A residue cosine needs the teacher's width: it is taken from
``adapted_stages`` (the student's adapter outputs) when given, else from ``student_stages``; a
stage whose cosine vectors are not of the teacher's width reports no cosine (None).

Linear CKA is biased upwards when residues are few against the widths: for unrelated
representations it is about sqrt(p q) / n, so score many more residues than the widths (n = 50,000
residues puts that floor near 0.02 for 1152-wide vectors).

Memory: per stage, three float64 Gram matrices (up to 1152 x 1152, about 10 MB each) and the
histogram; nothing grows with the number of residues.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

COSINE_BINS = 2000  # histogram of residue cosines over [-1, 1]
COSINE_BIN_WIDTH = 2.0 / COSINE_BINS  # 0.001
P05_RESOLUTION = COSINE_BIN_WIDTH / 2  # the histogram p05 is within this of numpy's percentile
EPS = 1e-12  # as protkit.evaluate.metrics.cosine_rows


def as_float64(x: torch.Tensor | np.ndarray, device: torch.device | None = None) -> torch.Tensor:
    return torch.as_tensor(x).to(device=device, dtype=torch.float64)


def cka_from_centered(cross: torch.Tensor, x_gram: torch.Tensor, y_gram: torch.Tensor) -> float | None:
    """Linear CKA from centred ``Y^T X`` (q, p), ``X^T X`` (p, p) and ``Y^T Y`` (q, q); None when
    either side has no variance."""
    denominator = float(torch.linalg.matrix_norm(x_gram) * torch.linalg.matrix_norm(y_gram))
    if not denominator > 0:
        return None
    return float(torch.linalg.matrix_norm(cross) ** 2) / denominator


def linear_cka(x: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray) -> float | None:
    """Exact linear CKA of ``x`` (n, p) and ``y`` (n, q), rows paired, in memory and float64;
    None for fewer than two rows or a side without variance."""
    x, y = as_float64(x), as_float64(y)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"CKA pairs rows: x has {x.shape[0]} rows, y has {y.shape[0]}")
    if x.shape[0] < 2:
        return None
    x, y = x - x.mean(0), y - y.mean(0)  # (n, p), (n, q)
    return cka_from_centered(y.T @ x, x.T @ x, y.T @ y)


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise cosine of ``a`` (n, D) and ``b`` (n, D) in float64.  # (n,)"""
    a, b = a.double(), b.double()
    return (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1)).clamp_min(EPS)


class StreamingCKA:
    """Linear CKA of paired rows fed in batches: float64 sums of X, Y, X^T X, Y^T Y and Y^T X,
    centred at the end. Rows are shifted by the first batch's means first (centring does not
    change under a shift), so the final subtraction does not cancel large means."""

    def __init__(self) -> None:
        self.n = 0
        self.device: torch.device | None = None
        self.shift_x = self.shift_y = self.sum_x = self.sum_y = None
        self.x_gram = self.y_gram = self.cross = None

    def update(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Add paired rows ``x`` (n, p) and ``y`` (n, q)."""
        if x.shape[0] == 0:
            return
        if self.device is None:
            self.device = x.device
            self.shift_x, self.shift_y = as_float64(x).mean(0), as_float64(y, x.device).mean(0)  # (p,), (q,)
            p, q = x.shape[1], y.shape[1]
            self.sum_x, self.sum_y = self.shift_x.new_zeros(p), self.shift_x.new_zeros(q)
            self.x_gram, self.y_gram = self.shift_x.new_zeros(p, p), self.shift_x.new_zeros(q, q)
            self.cross = self.shift_x.new_zeros(q, p)
        x = as_float64(x, self.device) - self.shift_x  # (n, p)
        y = as_float64(y, self.device) - self.shift_y  # (n, q)
        self.n += x.shape[0]
        self.sum_x += x.sum(0)
        self.sum_y += y.sum(0)
        self.x_gram += x.T @ x
        self.y_gram += y.T @ y
        self.cross += y.T @ x

    def value(self) -> float | None:
        """CKA of all rows so far (None below two rows or without variance)."""
        if self.n < 2:
            return None
        mean_x, mean_y = self.sum_x / self.n, self.sum_y / self.n  # (p,), (q,)
        return cka_from_centered(
            self.cross - self.n * torch.outer(mean_y, mean_x),
            self.x_gram - self.n * torch.outer(mean_x, mean_x),
            self.y_gram - self.n * torch.outer(mean_y, mean_y),
        )


def histogram_percentile(histogram: np.ndarray, q: float) -> float | None:
    """The ``q``-th percentile (numpy's linear interpolation) of the values counted in a
    :data:`COSINE_BINS` histogram over [-1, 1], each value taken at its bin's centre: within
    :data:`P05_RESOLUTION` of the exact percentile."""
    n = int(histogram.sum())
    if n == 0:
        return None
    rank = q / 100 * (n - 1)  # 0-based position in the sorted values
    below, fraction = int(np.floor(rank)), rank - np.floor(rank)
    cumulative = np.cumsum(histogram)  # (bins,)
    bins = np.searchsorted(cumulative, [below, min(below + 1, n - 1)], side="right")  # bins of those ranks
    centres = -1.0 + (bins + 0.5) * COSINE_BIN_WIDTH
    return float(centres[0] + fraction * (centres[1] - centres[0]))


class CosineSummary:
    """Mean and histogram of per-residue cosines fed in batches."""

    def __init__(self) -> None:
        self.n = 0
        self.total = 0.0
        self.histogram = np.zeros(COSINE_BINS, np.int64)

    def update(self, student: torch.Tensor, teacher: torch.Tensor) -> None:
        """Add the cosines of paired rows ``student`` (n, D) and ``teacher`` (n, D)."""
        values = cosine(student, teacher)  # (n,)
        bins = ((values.clamp(-1.0, 1.0) + 1.0) / COSINE_BIN_WIDTH).floor().long().clamp(0, COSINE_BINS - 1)
        self.histogram += torch.bincount(bins, minlength=COSINE_BINS).cpu().numpy()
        self.total += float(values.sum())
        self.n += values.numel()

    def mean(self) -> float | None:
        return self.total / self.n if self.n else None

    def percentile(self, q: float) -> float | None:
        return histogram_percentile(self.histogram, q)


class LabelAgreement:
    """Agreement of predicted labels with reference labels over ``classes`` classes, from a
    running confusion matrix (rows: reference, columns: predicted)."""

    def __init__(self, classes: int) -> None:
        self.classes = classes
        self.confusion = np.zeros((classes, classes), np.int64)

    def update(self, predicted: torch.Tensor, reference: torch.Tensor) -> None:
        """Add labels ``predicted`` (n,) and ``reference`` (n,) in ``[0, classes)``."""
        pairs = reference.long() * self.classes + predicted.long()  # (n,)
        counts = torch.bincount(pairs, minlength=self.classes**2).cpu().numpy()
        self.confusion += counts.reshape(self.classes, self.classes)

    @property
    def n(self) -> int:
        return int(self.confusion.sum())

    def top1(self) -> float | None:
        """Share of positions where the labels agree."""
        return float(np.trace(self.confusion)) / self.n if self.n else None

    def macro_f1(self) -> float | None:
        """Mean F1 over the classes that occur among either labels (sklearn's
        ``f1_score(reference, predicted, average="macro")``)."""
        hits = np.diag(self.confusion).astype(np.float64)  # (classes,)
        reference, predicted = self.confusion.sum(1), self.confusion.sum(0)  # (classes,), (classes,)
        present = (reference + predicted) > 0
        if not present.any():
            return None
        return float(np.mean(2 * hits[present] / (reference[present] + predicted[present])))


def check_batch(stages: Sequence[torch.Tensor], mask: torch.Tensor, name: str) -> None:
    for i, x in enumerate(stages, start=1):
        if x.dim() != 3 or tuple(x.shape[:2]) != tuple(mask.shape):
            raise ValueError(f"{name} stage {i}: shape {tuple(x.shape)} is not (B, L, D) with (B, L) = "
                             f"{tuple(mask.shape)}, the residue mask's shape")


def mean_pooled(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over each sequence's masked-in positions (padding may hold NaN) in float64; sequences
    without any position are left out.  # (B', D)"""
    counts = mask.sum(1)  # (B,)
    sums = x.masked_fill(~mask[..., None], 0).sum(1, dtype=torch.float64)  # (B, D)
    keep = counts > 0
    return sums[keep] / counts[keep, None]


class StageMetrics:
    """Streaming agreement of a multi-stage student with its teacher; see the module docstring.

    ``update`` once per batch, ``result`` at the end. Every batch must give the same number of
    stages with the same widths. ``mask`` (B, L) marks the residues to score: build it with
    :func:`protkit.sequences.tokenize.residue_mask` to leave out CLS, EOS and padding."""

    def __init__(self) -> None:
        self.widths: list[tuple[int, int, int]] | None = None  # per stage: student, cosine vectors, teacher
        self.cka: list[StreamingCKA] = []
        self.cosine: list[CosineSummary | None] = []
        self.mlm: LabelAgreement | None = None
        self.pooled_total, self.sequences, self.residues = 0.0, 0, 0

    def start(self, widths: list[tuple[int, int, int]]) -> None:
        """Set up per-stage state on the first batch; check later batches keep the widths."""
        if self.widths is None:
            self.widths = widths
            self.cka = [StreamingCKA() for _ in widths]
            self.cosine = [CosineSummary() if c == t else None for _, c, t in widths]
        elif widths != self.widths:
            raise ValueError(f"stage widths (student, cosine vectors, teacher) changed between batches: "
                             f"{self.widths} before, {widths} now")

    def update(
        self,
        student_stages: Sequence[torch.Tensor],
        teacher_stages: Sequence[torch.Tensor],
        mask: torch.Tensor,
        student_logits: torch.Tensor | None = None,
        teacher_logits: torch.Tensor | None = None,
        adapted_stages: Sequence[torch.Tensor] | None = None,
    ) -> None:
        """Add one batch: per stage ``student_stages[i]`` (B, L, Ds), ``teacher_stages[i]`` (B, L, Dt)
        and optionally ``adapted_stages[i]`` (B, L, Dt), the student's vectors for the cosine;
        ``mask`` (B, L) bool; MLM ``student_logits`` and ``teacher_logits`` (B, L, V), both or neither."""
        cosine_stages = student_stages if adapted_stages is None else adapted_stages
        if not len(student_stages) == len(teacher_stages) == len(cosine_stages) > 0:
            raise ValueError(f"{len(student_stages)} student stages, {len(teacher_stages)} teacher stages and "
                             f"{len(cosine_stages)} adapted stages: give one of each per stage")
        if (student_logits is None) != (teacher_logits is None):
            raise ValueError("give both student_logits and teacher_logits, or neither")
        mask = mask.bool()
        for name, stages in (("student", student_stages), ("teacher", teacher_stages), ("adapted", cosine_stages)):
            check_batch(stages, mask, name)
        self.start([(s.shape[-1], c.shape[-1], t.shape[-1])
                    for s, c, t in zip(student_stages, cosine_stages, teacher_stages)])
        for cka, summary, student, vectors, teacher in zip(
            self.cka, self.cosine, student_stages, cosine_stages, teacher_stages
        ):
            real = mask.to(teacher.device)
            cka.update(student[mask.to(student.device)], teacher[real])  # (n, Ds), (n, Dt)
            if summary is not None:
                summary.update(vectors[mask.to(vectors.device)].to(teacher.device), teacher[real])
        if self.cosine[-1] is not None:
            vectors, teacher = cosine_stages[-1], teacher_stages[-1]
            pooled_student = mean_pooled(vectors, mask.to(vectors.device)).to(teacher.device)  # (B', Dt)
            self.pooled_total += float(cosine(pooled_student, mean_pooled(teacher, mask.to(teacher.device))).sum())
        if student_logits is not None:
            self.update_mlm(student_logits, teacher_logits, mask)
        self.residues += int(mask.sum())
        self.sequences += int(mask.any(1).sum())

    def update_mlm(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor, mask: torch.Tensor) -> None:
        """Add the argmax agreement of MLM logits (B, L, V) over ``mask`` (B, L)."""
        vocabulary = teacher_logits.shape[-1]
        if student_logits.shape != teacher_logits.shape or tuple(teacher_logits.shape[:2]) != tuple(mask.shape):
            raise ValueError(f"MLM logits: student {tuple(student_logits.shape)} and teacher "
                             f"{tuple(teacher_logits.shape)} must both be (B, L, V) with (B, L) = {tuple(mask.shape)}")
        if self.mlm is None:
            self.mlm = LabelAgreement(vocabulary)
        elif self.mlm.classes != vocabulary:
            raise ValueError(f"MLM vocabulary changed between batches: {self.mlm.classes} before, {vocabulary} now")
        predicted = student_logits[mask.to(student_logits.device)].argmax(-1)  # (n,)
        reference = teacher_logits[mask.to(teacher_logits.device)].argmax(-1)  # (n,)
        self.mlm.update(predicted.cpu(), reference.cpu())

    def result(self) -> dict:
        """JSON-ready metrics of everything seen so far (None where undefined)."""
        stages = [
            {"stage": i, "student_width": s, "teacher_width": t,
             "cosine_mean": None if summary is None else summary.mean(),
             "cosine_p05": None if summary is None else summary.percentile(5),
             "cka": cka.value()}
            for i, ((s, _, t), cka, summary) in enumerate(zip(self.widths or [], self.cka, self.cosine), start=1)
        ]
        mlm = None if self.mlm is None else {"top1": self.mlm.top1(), "macro_f1": self.mlm.macro_f1(),
                                             "residues": self.mlm.n}
        pooled = self.pooled_total / self.sequences if self.sequences and self.cosine[-1] is not None else None
        return {"stages": stages, "mlm": mlm, "pooled_cosine_last": pooled, "residues": self.residues,
                "sequences": self.sequences, "cosine_p05_resolution": P05_RESOLUTION}


def fmt(value: float | None, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def stages_markdown(result: dict, teacher_layers: Sequence[int] | None = None) -> list[str]:
    """A section of report lines: one table row per stage (residue cosine, its p05, linear CKA),
    then MLM top-1 / macro-F1 and the last stage's pooled cosine. ``teacher_layers``: the teacher
    layer each stage was trained to match, in stage order."""
    stages = result["stages"]
    if teacher_layers is not None and len(teacher_layers) != len(stages):
        raise ValueError(f"{len(teacher_layers)} teacher layers given for {len(stages)} stages")
    layers = [str(layer) for layer in teacher_layers] if teacher_layers is not None else ["–"] * len(stages)
    lines = [
        "## Stages against teacher layers",
        "",
        f"Over {result['residues']:,} residues of {result['sequences']:,} proteins. *residue cosine*: mean cosine "
        f"of each residue's student (adapted) and teacher vectors; *p05*: its 5th percentile (±"
        f"{result['cosine_p05_resolution']:g}); *linear CKA*: Kornblith et al. 2019, residues as samples.",
        "",
        "| stage | teacher layer | residue cosine | p05 | linear CKA |",
        "| --- | --- | --- | --- | --- |",
        *(f"| {s['stage']} | {layer} | {fmt(s['cosine_mean'])} | {fmt(s['cosine_p05'], 3)} | {fmt(s['cka'])} |"
          for s, layer in zip(stages, layers)),
        "",
    ]
    mlm = result["mlm"]
    if mlm is not None:
        lines += [f"MLM head against the teacher's (argmax over {mlm['residues']:,} residues): top-1 agreement "
                  f"{fmt(mlm['top1'])}, macro-F1 {fmt(mlm['macro_f1'])}.", ""]
    lines += [f"Pooled cosine, last stage (mean over residues, per protein): {fmt(result['pooled_cosine_last'])}.", ""]
    return lines
