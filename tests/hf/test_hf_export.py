"""protkit.hf: `protkit export --format hf` directories load in a process where protkit cannot be
imported, with transformers 4 (the lock's) and 5 (installed at test time), and give protkit's numbers:
the student's `embed_teacher` vectors equal `protkit embed`'s, the teacher's last hidden state
equals protkit's ESMC, heads give losses as transformers infers them, attentions are probabilities,
LoRA trains."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from protkit.cli.main import main
from protkit.embed.loading import load_embedder
from protkit.embed.run import embed_fasta
from protkit.models.esmc import ESMCConfig, random_esmc, save_weights
from protkit.sequences.fasta import read_fasta, write_fasta
from protkit.sequences.tokenize import encode_batch

# Runs with protkit made unimportable; writes what it computed to OUT (npz) and checks.json.
CHECKER = r'''
import json, sys
sys.modules["protkit"] = None  # the export must not need protkit
import numpy as np, torch
from transformers import (AutoModel, AutoModelForMaskedLM, AutoModelForSequenceClassification,
                          AutoModelForTokenClassification, AutoTokenizer)
student, teacher, fasta, out = sys.argv[1:5]
sequences = ["".join(record.split("\n")[1:]) for record in open(fasta).read().split(">")[1:]]
tokenizer = AutoTokenizer.from_pretrained(student)
batch = tokenizer(sequences, padding=True, return_tensors="pt")
ids, mask = batch["input_ids"], batch["attention_mask"]
arrays, checks = {"input_ids": ids.numpy(), "attention_mask": mask.numpy()}, {}
with torch.no_grad():
    model = AutoModel.from_pretrained(student, trust_remote_code=True).eval()
    fast = model(**batch, output_hidden_states=True)
    slow = model(**batch, output_attentions=True)
    arrays["mean"] = model.embed_teacher(ids, mask, pooling="mean").numpy()
    arrays["cls"] = model.embed_teacher(ids, mask, pooling="cls").numpy()
    checks["student_hidden_states"] = len(fast.hidden_states)
    checks["manual_vs_fast"] = float((slow.last_hidden_state - fast.last_hidden_state).abs().max())
    sums = torch.stack(slow.attentions).sum(-1)  # (layers, B, H, L)
    checks["row_sums"] = float((sums - 1).abs().masked_select(mask.bool()[None, :, None, :]).max())
    checks["padding_weight"] = float(torch.stack(slow.attentions).masked_select(~mask.bool()[None, :, None, None, :]).abs().max())
    lm = AutoModelForMaskedLM.from_pretrained(teacher, trust_remote_code=True).eval()
    out_t = lm(**batch, labels=torch.where(mask.bool(), ids, -100))
    arrays["teacher_hidden"] = AutoModel.from_pretrained(teacher, trust_remote_code=True)(**batch).last_hidden_state.numpy()
    checks["mlm_loss"] = float(out_t.loss)
    for dtype in (torch.float16, torch.bfloat16):
        low = AutoModel.from_pretrained(student, trust_remote_code=True, dtype=dtype)
        checks[str(dtype)] = str(low(**batch).last_hidden_state.dtype)
n = len(sequences)
for kind, labels, num in (("regression", torch.randn(n), 1), ("single_label_classification", torch.arange(n) % 3, 3),
                          ("multi_label_classification", (torch.rand(n, 4) > 0.5).float(), 4)):
    head = AutoModelForSequenceClassification.from_pretrained(student, trust_remote_code=True, num_labels=num).eval()
    result = head(**batch, labels=labels)
    checks[f"sequence_{kind}"] = [head.config.problem_type, float(result.loss), list(result.logits.shape)]
tokens = AutoModelForTokenClassification.from_pretrained(teacher, trust_remote_code=True, num_labels=2).eval()
token_labels = torch.where(mask.bool(), ids % 2, -100)
token_labels[:, 0] = -100
result = tokens(**batch, labels=token_labels)
keep = token_labels != -100
manual = torch.nn.functional.cross_entropy(result.logits[keep], token_labels[keep])
checks["token_loss_vs_manual"] = abs(float(result.loss) - float(manual))
from peft import LoraConfig, get_peft_model
torch.manual_seed(0)
head = AutoModelForSequenceClassification.from_pretrained(student, trust_remote_code=True, num_labels=2)
lora = get_peft_model(head, LoraConfig(target_modules="all-linear", modules_to_save=["classifier"], r=4))
optimizer = torch.optim.AdamW([p for p in lora.parameters() if p.requires_grad], lr=1e-2)
losses, labels = [], torch.arange(n) % 2
for _ in range(15):
    loss = lora(**batch, labels=labels).loss
    loss.backward(); optimizer.step(); optimizer.zero_grad(); losses.append(float(loss))
with torch.no_grad():  # the loss after the last step, not before it
    checks["lora_losses"] = [losses[0], float(lora(**batch, labels=labels).loss)]
checks["lora_trainable"] = sum(p.numel() for p in lora.parameters() if p.requires_grad)
checks["all_params"] = sum(p.numel() for p in lora.parameters())
model.save_pretrained(out + ".resaved")
tokenizer.save_pretrained(out + ".resaved")
again = AutoModel.from_pretrained(out + ".resaved", trust_remote_code=True).eval()
with torch.no_grad():
    checks["resaved_diff"] = float((again(**batch).last_hidden_state - fast.last_hidden_state).abs().max())
import transformers
checks["transformers"] = transformers.__version__
np.savez(out, **arrays)
json.dump(checks, open(out + ".json", "w"))
'''


def relative_l2(ours: np.ndarray, reference: np.ndarray) -> float:
    return float(np.linalg.norm(ours - reference) / np.linalg.norm(reference))


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> dict[str, Path]:
    """The tiny student and a small random ESMC teacher (64-wide heads, as released ESMC: a weights
    file tells no head count) exported, and 12 real proteins."""
    import importlib.resources

    root = tmp_path_factory.mktemp("hf")
    proteome = importlib.resources.files("pyhmmer") / "tests/data/seqs/938293.PRJEB85.HG003687.faa"
    records = [r for r in read_fasta(str(proteome)) if len(r.sequence) < 300][:12]
    write_fasta([(r.id, r.sequence.rstrip("*")) for r in records], root / "proteins.fasta")
    save_weights(random_esmc(ESMCConfig(d_model=128, n_heads=2, n_layers=2), seed=0), root / "teacher.safetensors")
    assert main(["-q", "export", "--model", str(model_dir), "--format", "hf", "--output", str(root / "student")]) == 0
    assert main(["-q", "export", "--model", str(root / "teacher.safetensors"), "--format", "hf",
                 "--output", str(root / "teacher")]) == 0
    return {"root": root, "student": root / "student", "teacher": root / "teacher",
            "fasta": root / "proteins.fasta", "model_dir": model_dir}


def run_checker(exported: dict[str, Path], name: str, pythonpath: str | None = None) -> tuple[dict, dict]:
    out = exported["root"] / name
    env = {**os.environ, "HF_HOME": str(exported["root"] / f"hf-home-{name}"), "HF_HUB_OFFLINE": "1"}
    env.pop("PYTHONPATH", None)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    done = subprocess.run([sys.executable, "-c", CHECKER, str(exported["student"]), str(exported["teacher"]),
                           str(exported["fasta"]), str(out)], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    return dict(np.load(f"{out}.npz")), json.loads(Path(f"{out}.json").read_text())


def check_numbers(exported: dict[str, Path], arrays: dict, checks: dict) -> None:
    sequences = [r.sequence for r in read_fasta(exported["fasta"])]
    ours = encode_batch(sequences)
    assert np.array_equal(arrays["input_ids"], ours.input_ids.numpy())  # AutoTokenizer gives protkit's ids
    assert np.array_equal(arrays["attention_mask"].astype(bool), ours.attention_mask.numpy())
    embeddings = exported["root"] / "embed.parquet"
    if not embeddings.exists():
        embedder = load_embedder(exported["model_dir"], backend="torch", device="cpu")
        embed_fasta(embedder, exported["fasta"], embeddings, poolings=["mean", "cls"])
    import pyarrow.parquet as pq

    table = pq.read_table(embeddings)
    for pooling in ("mean", "cls"):
        reference = np.stack(table.column(pooling).to_pylist())
        assert max(relative_l2(a, b) for a, b in zip(arrays[pooling], reference)) <= 1e-5, pooling
    teacher = random_esmc(ESMCConfig(d_model=128, n_heads=2, n_layers=2), seed=0)
    with torch.no_grad():
        reference = teacher(ours.input_ids, ours.attention_mask).last_hidden_state.numpy()
    real = ours.attention_mask.numpy()
    assert relative_l2(arrays["teacher_hidden"][real], reference[real]) <= 1e-5
    assert checks["student_hidden_states"] == 3  # embeddings + 2 blocks
    assert checks["manual_vs_fast"] <= 1e-5 and checks["row_sums"] <= 1e-5 and checks["padding_weight"] == 0.0
    assert np.isfinite(checks["mlm_loss"])
    assert checks["torch.float16"] == "torch.float16" and checks["torch.bfloat16"] == "torch.bfloat16"
    for kind, shape in (("regression", [12, 1]), ("single_label_classification", [12, 3]),
                        ("multi_label_classification", [12, 4])):
        problem, loss, logits = checks[f"sequence_{kind}"]
        assert problem == kind and np.isfinite(loss) and logits == shape
    assert checks["token_loss_vs_manual"] <= 1e-5  # -100 ignored
    first, last = checks["lora_losses"]
    assert last < first and checks["lora_trainable"] < checks["all_params"] / 2
    assert checks["resaved_diff"] == 0.0


def test_export_loads_without_protkit_under_the_locked_transformers(exported: dict[str, Path]) -> None:
    arrays, checks = run_checker(exported, "locked")
    assert checks["transformers"].startswith("4.")
    check_numbers(exported, arrays, checks)


def test_export_loads_without_protkit_under_transformers_5(exported: dict[str, Path]) -> None:
    target = exported["root"] / "transformers5"
    installed = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                                "--target", str(target), "transformers>=5,<6"], capture_output=True, text=True,
                               timeout=600)
    if installed.returncode:
        message = f"cannot install transformers 5 into a temporary target: {installed.stderr.strip()[-300:]}"
        if os.environ.get("PROTKIT_REQUIRE_TRANSFORMERS5"):
            pytest.fail(message)
        pytest.skip(message)
    arrays, checks = run_checker(exported, "five", pythonpath=str(target))
    assert checks["transformers"].startswith("5.")
    check_numbers(exported, arrays, checks)


def test_export_refuses_what_has_no_float_weights(model_dir: Path, tmp_path: Path, capsys) -> None:
    assert main(["-q", "export", "--model", str(model_dir / "int8"), "--format", "hf",
                 "--output", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "int8" in err[0] and not (tmp_path / "x").exists()


def test_bundled_modeling_file_needs_only_torch_and_transformers(exported: dict[str, Path]) -> None:
    import ast

    for name in ("student/modeling_prothash.py", "teacher/modeling_esmc.py"):
        tree = ast.parse((exported["root"] / name).read_text())
        roots = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                 for alias in node.names}
        roots |= {node.module.split(".")[0] for node in ast.walk(tree)
                  if isinstance(node, ast.ImportFrom) and node.module}
        assert roots <= {"__future__", "torch", "transformers", "math", "dataclasses", "os", "typing"}, roots


def test_export_files_get_the_usual_permissions(exported: dict[str, Path]) -> None:
    umask = os.umask(0)
    os.umask(umask)
    for path in (exported["root"] / "student").iterdir():
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask, path.name
