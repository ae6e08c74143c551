"""protkit.evaluate.stages: streaming per-stage metrics of a multi-stage student (linear CKA against
the exact in-memory one and its invariances, residue cosine and its histogram p05, MLM top-1 and
macro-F1 against sklearn, pooled cosine), padding that cannot leak in, widths, and the markdown."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, f1_score

from protkit.evaluate.metrics import cosine_rows
from protkit.evaluate.stages import (
    COSINE_BINS, P05_RESOLUTION, StageMetrics, StreamingCKA, histogram_percentile, linear_cka, stages_markdown,
)

STUDENT_WIDTHS = (12, 16)  # native student widths of the two stages
TEACHER_WIDTH = 16
VOCABULARY = 33
KEYS = ("student_stages", "teacher_stages", "adapted_stages", "student_logits", "teacher_logits")


def residue_mask_np(lengths: np.ndarray) -> np.ndarray:
    """True on residues: positions 1..length (0 is CLS, length + 1 EOS, the rest padding).  # (B, L)"""
    positions = np.arange(lengths.max() + 2)[None, :]
    return (positions >= 1) & (positions <= lengths[:, None])


def with_padding(lengths: np.ndarray, values: np.ndarray, fill: float) -> torch.Tensor:
    """Rows of ``values`` (n, D) laid out as a padded (B, L, D) batch, ``fill`` elsewhere."""
    out = np.full((len(lengths), lengths.max() + 2, values.shape[1]), fill, np.float32)  # (B, L, D)
    out[residue_mask_np(lengths)] = values
    return torch.from_numpy(out)


def make_batches(fill: float = float("nan"), n_batches: int = 12, seed: int = 0) -> tuple[list[dict], dict]:
    """Random batches of a 2-stage student (stage 1: 12 wide, adapted to 16; stage 2: 16 wide, its
    own vectors as adapted ones) and a 16-wide teacher, related but noisy, means far from zero;
    ``fill`` on CLS, EOS and padding. Also the real rows (float32 values as float64), concatenated."""
    rng = np.random.default_rng(seed)
    mixes = [rng.normal(size=(d, TEACHER_WIDTH)) for d in STUDENT_WIDTHS]
    adapter = rng.normal(size=(STUDENT_WIDTHS[0], TEACHER_WIDTH))
    batches, rows, lengths_all = [], {key: [] for key in KEYS}, []
    for _ in range(n_batches):
        lengths = rng.integers(1, 30, size=int(rng.integers(1, 6)))  # (B,)
        n = int(lengths.sum())
        student = [5.0 + rng.normal(size=(n, d)) for d in STUDENT_WIDTHS]
        teacher = [s @ m + rng.normal(scale=2.0, size=(n, TEACHER_WIDTH)) - 3.0 for s, m in zip(student, mixes)]
        teacher_logits = rng.normal(size=(n, VOCABULARY)) + np.where(np.arange(VOCABULARY) < 20, 3.0, -5.0)
        real = {
            "student_stages": student, "teacher_stages": teacher, "adapted_stages": [student[0] @ adapter, student[1]],
            "student_logits": teacher_logits + rng.normal(scale=1.5, size=(n, VOCABULARY)),
            "teacher_logits": teacher_logits,
        }
        batch = {key: [with_padding(lengths, v, fill) for v in value] if isinstance(value, list)
                 else with_padding(lengths, value, fill) for key, value in real.items()}
        batches.append(dict(batch, mask=torch.from_numpy(residue_mask_np(lengths))))
        held = lambda x: x.astype(np.float32).astype(np.float64)  # noqa: E731  (the values the batches hold)
        for key in KEYS:
            rows[key].append([held(v) for v in real[key]] if isinstance(real[key], list) else held(real[key]))
        lengths_all.append(lengths)
    joined = {key: [np.concatenate(stage) for stage in zip(*rows[key])] if isinstance(rows[key][0], list)
              else np.concatenate(rows[key]) for key in KEYS}
    return batches, dict(joined, lengths=np.concatenate(lengths_all))


def streamed(batches: list[dict]) -> dict:
    metrics = StageMetrics()
    for batch in batches:
        metrics.update(**batch)
    return metrics.result()


@pytest.fixture(scope="module")
def data() -> tuple[dict, dict]:
    batches, rows = make_batches()
    return streamed(batches), rows


def streamed_cka(x: np.ndarray, y: np.ndarray, batch: int = 37) -> float | None:
    cka = StreamingCKA()
    for start in range(0, len(x), batch):
        cka.update(torch.from_numpy(x[start:start + batch]), torch.from_numpy(y[start:start + batch]))
    return cka.value()


# --- linear CKA ------------------------------------------------------------------------------------
def test_streaming_cka_equals_exact_cka_on_the_real_residues(data):
    result, rows = data
    for stage, row in enumerate(result["stages"]):
        want = linear_cka(rows["student_stages"][stage], rows["teacher_stages"][stage])
        assert 0.2 < want < 0.99  # related, not identical: a wrong centring would show
        assert row["cka"] == pytest.approx(want, abs=1e-9, rel=0)
    assert result["residues"] == rows["lengths"].sum() and result["sequences"] == len(rows["lengths"])


def test_exact_cka_matches_the_hsic_formula():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(40, 5)), rng.normal(size=(40, 7))
    centring = np.eye(40) - 1 / 40  # H
    k, l_ = x @ x.T, y @ y.T
    hsic = lambda a, b: np.trace(a @ centring @ b @ centring)  # noqa: E731
    assert linear_cka(x, y) == pytest.approx(hsic(k, l_) / math.sqrt(hsic(k, k) * hsic(l_, l_)), rel=1e-12)


@pytest.mark.parametrize("cka", [linear_cka, streamed_cka], ids=["exact", "streaming"])
def test_cka_invariances(cka):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(500, 10)) + 4.0
    y = x @ rng.normal(size=(10, 6)) + rng.normal(size=(500, 6))
    rotation = np.linalg.qr(rng.normal(size=(10, 10)))[0]  # orthogonal
    base = cka(x, y)
    assert cka(x, x) == pytest.approx(1.0, abs=1e-12)
    assert cka(x @ rotation, y) == pytest.approx(base, abs=1e-12)
    assert cka(7.5 * x, 0.01 * y) == pytest.approx(base, abs=1e-12)
    assert cka(x + 100.0, y) == pytest.approx(base, abs=1e-9)
    assert cka(x, y) != pytest.approx(cka(x * np.arange(1, 11), y), abs=1e-3)  # anisotropic scaling matters


def test_cka_of_independent_data_is_small_and_undefined_cases_are_none():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(5000, 8)), rng.normal(size=(5000, 8))
    assert linear_cka(x, y) < 0.01 and streamed_cka(x, y) == pytest.approx(linear_cka(x, y), abs=1e-12)
    assert linear_cka(x[:1], y[:1]) is None and linear_cka(np.ones((10, 3)), y[:10]) is None
    assert StreamingCKA().value() is None
    with pytest.raises(ValueError, match="pairs rows"):
        linear_cka(x, y[:10])


# --- cosine, percentile, pooled ------------------------------------------------------------------
def test_residue_cosine_mean_and_p05(data):
    result, rows = data
    for stage, row in enumerate(result["stages"]):
        cosines = cosine_rows(rows["adapted_stages"][stage], rows["teacher_stages"][stage])  # (n,)
        assert cosines.std() > 0.05  # spread out: a wrong bin would show
        assert row["cosine_mean"] == pytest.approx(cosines.mean(), abs=1e-12)
        assert abs(row["cosine_p05"] - np.percentile(cosines, 5)) <= P05_RESOLUTION + 1e-12
    assert result["cosine_p05_resolution"] == P05_RESOLUTION == 1 / COSINE_BINS


def test_histogram_percentile_is_within_half_a_bin():
    rng = np.random.default_rng(4)
    for n in (1, 2, 7, 1000):
        values = np.clip(np.concatenate([rng.uniform(-1, 1, n - n // 2), rng.normal(0.9, 0.05, n // 2)]), -1, 1)
        histogram = np.bincount(np.minimum(((values + 1) / (2 / COSINE_BINS)).astype(int), COSINE_BINS - 1),
                                minlength=COSINE_BINS)
        for q in (0, 5, 37.5, 50, 100):
            assert abs(histogram_percentile(histogram, q) - np.percentile(values, q)) <= P05_RESOLUTION + 1e-12
    assert histogram_percentile(np.zeros(COSINE_BINS, np.int64), 5) is None


def test_pooled_cosine_of_the_last_stage(data):
    result, rows = data
    ends = np.cumsum(rows["lengths"])
    pool = lambda x: np.stack([x[e - k:e].mean(0) for k, e in zip(rows["lengths"], ends)])  # noqa: E731
    want = cosine_rows(pool(rows["adapted_stages"][-1]), pool(rows["teacher_stages"][-1])).mean()
    assert result["pooled_cosine_last"] == pytest.approx(want, abs=1e-12)


# --- MLM -----------------------------------------------------------------------------------------
def test_mlm_top1_and_macro_f1_equal_sklearn(data):
    result, rows = data
    predicted, reference = rows["student_logits"].argmax(1), rows["teacher_logits"].argmax(1)
    assert len(set(predicted) | set(reference)) < VOCABULARY  # some classes absent: the union matters
    mlm = result["mlm"]
    assert mlm["residues"] == len(reference)
    assert mlm["top1"] == pytest.approx(accuracy_score(reference, predicted), abs=1e-12)
    assert mlm["macro_f1"] == pytest.approx(f1_score(reference, predicted, average="macro"), abs=1e-12)
    assert 0 < mlm["macro_f1"] < 1 and mlm["macro_f1"] != pytest.approx(mlm["top1"], abs=1e-3)


def test_macro_f1_on_uniform_random_labels():
    rng = np.random.default_rng(5)
    reference, predicted = rng.integers(0, 10, 400), rng.integers(3, 14, 400)
    metrics = StageMetrics()
    x = torch.zeros(1, 400, 2)
    metrics.update([x], [x], torch.ones(1, 400, dtype=torch.bool),
                   torch.nn.functional.one_hot(torch.from_numpy(predicted), VOCABULARY)[None].float(),
                   torch.nn.functional.one_hot(torch.from_numpy(reference), VOCABULARY)[None].float())
    mlm = metrics.result()["mlm"]
    assert mlm["macro_f1"] == pytest.approx(f1_score(reference, predicted, average="macro"), abs=1e-12)
    assert mlm["top1"] == pytest.approx(accuracy_score(reference, predicted), abs=1e-12)


# --- padding, widths, devices ----------------------------------------------------------------------
def with_empty_row(batch: dict) -> dict:
    """``batch`` with one more sequence, all padding (mask False, values NaN)."""
    grow = lambda x: torch.cat([x, torch.full_like(x[:1], float("nan"))])  # noqa: E731
    return {key: torch.cat([value, torch.zeros_like(value[:1])]) if key == "mask"
            else [grow(x) for x in value] if isinstance(value, list) else grow(value) for key, value in batch.items()}


@pytest.mark.parametrize("fill", [0.0, float("inf"), -1e30])
def test_padding_values_change_no_metric(data, fill):
    result, _ = data  # padding held NaN there
    assert streamed(make_batches(fill=fill)[0]) == result
    batches = make_batches(fill=fill)[0]
    assert streamed([with_empty_row(b) for b in batches]) == result  # sequences without residues: not counted


def test_widths_adapted_vectors_and_consistency():
    batches, _ = make_batches(n_batches=3)
    native = streamed([{k: v for k, v in b.items() if k != "adapted_stages"} for b in batches])
    adapted = streamed(batches)
    assert [s["cka"] for s in native["stages"]] == [s["cka"] for s in adapted["stages"]]  # CKA of the native vectors
    assert native["stages"][0]["cosine_mean"] is None and adapted["stages"][0]["cosine_mean"] is not None
    assert native["pooled_cosine_last"] == adapted["pooled_cosine_last"] is not None
    assert native["stages"][1] == adapted["stages"][1]  # stage 2: adapted vectors == native ones
    assert [(s["student_width"], s["teacher_width"]) for s in native["stages"]] == [(12, 16), (16, 16)]
    metrics = StageMetrics()
    metrics.update(**batches[0])
    first, second = batches[1]["student_stages"]
    changed = dict(batches[1], student_stages=[first[..., :8], second])
    with pytest.raises(ValueError, match="widths .* changed"):
        metrics.update(**changed)
    with pytest.raises(ValueError, match="one of each per stage"):
        metrics.update(**dict(batches[1], teacher_stages=batches[1]["teacher_stages"][:1]))
    with pytest.raises(ValueError, match="not \\(B, L, D\\)"):
        metrics.update(**dict(batches[1], mask=batches[1]["mask"][:, 1:]))
    with pytest.raises(ValueError, match="both"):
        metrics.update(**dict(batches[1], teacher_logits=None))


def test_empty_metrics_and_json():
    result = StageMetrics().result()
    assert result["stages"] == [] and result["mlm"] is None and result["pooled_cosine_last"] is None
    batches, _ = make_batches(n_batches=2)
    json.dumps(streamed(batches), allow_nan=False)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_tensors_give_the_cpu_result(data):
    result, _ = data
    batches = [{k: [t.cuda() for t in v] if isinstance(v, list) else v.cuda() for k, v in b.items()}
               for b in make_batches()[0]]
    on_gpu = streamed(batches)
    for gpu, cpu in zip(on_gpu["stages"], result["stages"]):
        assert gpu["cka"] == pytest.approx(cpu["cka"], abs=1e-9)
        assert gpu["cosine_mean"] == pytest.approx(cpu["cosine_mean"], abs=1e-12)
    assert on_gpu["mlm"] == result["mlm"]


# --- markdown ------------------------------------------------------------------------------------
def test_markdown_has_one_row_per_stage(data):
    result, _ = data
    lines = stages_markdown(result, teacher_layers=[10, 29])
    rows = [line for line in lines if line.startswith("| ") and not line.startswith("| stage") and "---" not in line]
    assert len(rows) == len(result["stages"]) == 2
    assert rows[0].startswith("| 1 | 10 | ") and "| – |" not in rows[0]
    assert rows[1].startswith(f"| 2 | 29 | {result['stages'][1]['cosine_mean']:.4f} |")
    assert any("top-1 agreement" in line and f"{result['mlm']['macro_f1']:.4f}" in line for line in lines)
    assert "| 1 | – |" in "\n".join(stages_markdown(result))
    with pytest.raises(ValueError, match="3 teacher layers given for 2 stages"):
        stages_markdown(result, teacher_layers=[1, 2, 3])
