"""The ProtHash 1.0 student (StagedProtHash): parity with the prothash 1.0.0 package, padded batches,
both checkpoint formats, bad files, ``protkit embed --stage``, presets.

The real package (``prothash==1.0.0`` from PyPI) is installed with ``--no-deps`` into a temporary
directory and run in a subprocess (``PYTHONPATH=<target>``): it pins an older torch, but its code
runs on ours. ``PROTKIT_REQUIRE_PROTHASH=1`` makes a failed install an error instead of a skip. The
package has no padding mask and embeds one sequence at a time; protkit must match it per sequence,
and protkit's padded batches must match its single sequences.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from protkit.cli.main import main
from protkit.models.prothash.checkpoint import ModelFormatError
from protkit.models.prothash.config import ProtHashConfig
from protkit.models.prothash.model import ProtHash
from protkit.models.prothash_v1 import PRESETS, StagedConfig, StagedProtHash, detect_v1_format, export_prothash_v1
from protkit.models.prothash_v1.checkpoint import PACKAGE_KEYS, cache_names
from protkit.models.resolve import classify_model, load_student
from protkit.sequences.tokenize import encode_batch, encode_one

VERSION = "1.0.0"
TOL = 1e-5  # relative L2, fp32
N_PROTEINS = 5
MAX_RESIDUES = 300

TINY = PRESETS["ProtHash-1.0-Tiny"]  # 64-d, adapters to 96, MLM head, one layer per stage
IDENTITY = StagedConfig(d_model=64, heads=8, hidden_ratio=4, stage_layers=(1, 2, 1, 2), context_length=384,
                        teacher="unknown", teacher_dim=64)  # adapters are identities, no head


def package_args(cfg: StagedConfig) -> dict:
    """The package's constructor arguments for ``cfg``."""
    stages = {f"num_stage{s + 1}_layers": n for s, n in enumerate(cfg.stage_layers)}
    return dict(vocabulary_size=33, padding_index=1, context_length=cfg.context_length,
                teacher_dimensions=cfg.teacher_dim, embedding_dimensions=cfg.d_model, num_attention_heads=cfg.heads,
                hidden_ratio=cfg.hidden_ratio, **stages)


# Runs inside the package's subprocess: build a seeded random model (saved) or load a directory,
# then run every token list one at a time.
DRIVER = '''
import json, sys
import numpy as np
import torch
from safetensors.torch import load_file, load_model
from prothash.model import ESMCProtHash

jobs = json.loads(open(sys.argv[1]).read())
tokens = json.loads(open(sys.argv[2]).read())
for job in jobs:
    if job["mode"] == "build":
        torch.manual_seed(job["seed"])
        model = ESMCProtHash(**job["config"])
        if job["head"]:
            model.add_sequence_head()
        with torch.no_grad():  # norms away from 1, so that swapped norms would show
            for name, p in model.named_parameters():
                if "norm" in name:
                    p.copy_(1 + 0.3 * torch.randn_like(p))
        model.save_pretrained(job["dir"])
    else:
        model = ESMCProtHash.from_pretrained(job["dir"])
        if job["head"]:
            model.add_sequence_head()
        load_model(model, job["dir"] + "/model.safetensors", strict=True)  # every tensor, exactly the names
    model.eval()
    out = {}
    with torch.no_grad():
        for i, ids in enumerate(tokens):
            x = torch.tensor([ids])
            for s, (t, n) in enumerate(zip(vars(model.embed(x)).values(), vars(model.embed_native(x)).values())):
                out[f"teacher{s + 1}_{i}"], out[f"native{s + 1}_{i}"] = t[0].numpy(), n[0].numpy()
            if job["head"]:
                out[f"logits_{i}"] = model.forward(x)[4][0].numpy()
    np.savez(job["out"], **out)
'''


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def package_target(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real prothash 1.0.0 package installed (pip, --no-deps) into a temporary directory."""
    target = tmp_path_factory.mktemp(f"prothash-{VERSION}")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--disable-pip-version-check",
         "--target", str(target), f"prothash=={VERSION}"],
        capture_output=True, text=True,
    )  # fmt: skip
    if result.returncode != 0:
        reason = f"cannot install prothash=={VERSION} from PyPI: {result.stderr.strip()[-500:]}"
        if os.environ.get("PROTKIT_REQUIRE_PROTHASH") == "1":
            pytest.fail(reason + " (PROTKIT_REQUIRE_PROTHASH=1)")
        pytest.skip(reason)
    return target


@pytest.fixture(scope="module")
def proteins(shared_records) -> list[tuple[str, str]]:
    """A few real DeepLoc proteins (id, sequence) of lengths spread up to ``MAX_RESIDUES``."""
    fitting = sorted((r for r in shared_records if len(r.sequence) <= MAX_RESIDUES), key=lambda r: len(r.sequence))
    picks = np.unique(np.linspace(0, len(fitting) - 1, N_PROTEINS).round().astype(int))
    return [(fitting[i].id, fitting[i].sequence) for i in picks]


@pytest.fixture(scope="module")
def tokens(proteins) -> list[list[int]]:
    return [encode_one(seq) for _, seq in proteins]


def random_model(config: StagedConfig, seed: int) -> StagedProtHash:
    """A seeded protkit model with norms away from 1."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = StagedProtHash(config).eval()
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.randn_like(p) * 0.1)
            for name, p in model.named_parameters():
                if "norm" in name:
                    p.copy_(1 + 0.3 * torch.randn_like(p))
    return model


@pytest.fixture(scope="module")
def package_runs(package_target, tokens, tmp_path_factory) -> dict[str, tuple]:
    """One run of the package: it builds ``tiny`` and ``identity`` (saved in its format) and loads
    protkit's exports of two protkit models; ``name -> (directory, the package's outputs[, protkit model])``."""
    root = tmp_path_factory.mktemp("package-v1")
    exported = {}
    for i, (name, cfg) in enumerate((("export-tiny", TINY), ("export-identity", IDENTITY))):
        model = random_model(cfg, 20 + i)
        assert export_prothash_v1(model, root / name) == root / name
        exported[name] = model
    jobs = [
        {"mode": "build", "config": package_args(TINY), "head": True, "seed": 1, "dir": str(root / "tiny")},
        {"mode": "build", "config": package_args(IDENTITY), "head": False, "seed": 2, "dir": str(root / "identity")},
        {"mode": "load", "head": True, "dir": str(root / "export-tiny")},
        {"mode": "load", "head": False, "dir": str(root / "export-identity")},
    ]
    for i, job in enumerate(jobs):
        job["out"] = str(root / f"out-{i}.npz")
    (root / "driver.py").write_text(DRIVER)
    (root / "jobs.json").write_text(json.dumps(jobs))
    (root / "tokens.json").write_text(json.dumps(tokens))
    env = {**os.environ, "PYTHONPATH": str(package_target), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, str(root / "driver.py"), str(root / "jobs.json"),
                             str(root / "tokens.json")], capture_output=True, text=True, env=env)
    assert result.returncode == 0, f"prothash driver failed:\n{result.stderr[-3000:]}"
    out = {}
    for job in jobs:
        name = Path(job["dir"]).name
        out[name] = (Path(job["dir"]), dict(np.load(job["out"])), exported.get(name))
    return out


def rel_l2(got: np.ndarray | torch.Tensor, want: np.ndarray | torch.Tensor) -> float:
    """Relative L2 error of the whole array."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    return float(np.linalg.norm(got - want) / np.linalg.norm(want))


def check_against_package(model: StagedProtHash, want: dict, tokens: list[list[int]], label: str) -> None:
    """Every stage (through its adapter and native) and the MLM logits, one sequence at a time."""
    worst = 0.0
    with torch.no_grad():
        for i, ids in enumerate(tokens):
            x = torch.tensor([ids])
            for s, (t, n) in enumerate(zip(model.stages_teacher(x), model.stages(x))):
                worst = max(worst, rel_l2(t[0], want[f"teacher{s + 1}_{i}"]), rel_l2(n[0], want[f"native{s + 1}_{i}"]))
            if model.mlm_head is not None:
                worst = max(worst, rel_l2(model.mlm_logits(x)[0], want[f"logits_{i}"]))
    assert (model.mlm_head is not None) == any(k.startswith("logits") for k in want)
    print(f"{label}: max relative L2 {worst:.2e}")
    assert worst <= TOL


# --- the package's checkpoints ---------------------------------------------------------------------
@pytest.mark.parametrize("name, config", [("tiny", TINY), ("identity", IDENTITY)])
def test_package_checkpoint_matches_the_package(package_runs, tokens, name, config) -> None:
    directory, want, _ = package_runs[name]
    assert detect_v1_format(directory) == "prothash-1.0"
    model = StagedProtHash.from_pretrained(directory)
    assert model.config == config
    assert all(isinstance(a, torch.nn.Identity) == (name == "identity") for a in model.adapters)
    check_against_package(model, want, tokens, f"package {name}")


def test_padded_batches_equal_single_sequences(package_runs, tokens, proteins) -> None:
    model = StagedProtHash.from_pretrained(package_runs["tiny"][0])
    batch = encode_batch([seq for _, seq in proteins])
    assert not bool(batch.attention_mask.all())  # really padded
    with torch.no_grad():
        batched = model.stages_teacher(batch.input_ids, batch.attention_mask)
        logits = model.mlm_logits(batch.input_ids, batch.attention_mask)
        for i, ids in enumerate(tokens):
            single = model.stages_teacher(torch.tensor([ids]))
            for s in range(4):
                assert rel_l2(batched[s][i, : len(ids)], single[s][0]) <= TOL
            assert rel_l2(logits[i, : len(ids)], model.mlm_logits(torch.tensor([ids]))[0]) <= TOL
        for stage in (1, 4):
            for pooling in ("cls", "mean", "max"):
                for embed in (model.embed_teacher, model.embed_native):
                    pooled = embed(batch.input_ids, batch.attention_mask, pooling, stage)
                    alone = torch.cat([embed(torch.tensor([ids]), pooling=pooling, stage=stage) for ids in tokens])
                    assert rel_l2(pooled, alone) <= TOL


def test_package_checkpoint_from_a_hub_id(package_runs, tokens, offline_hub) -> None:
    directory, want, _ = package_runs["tiny"]
    offline_hub("andrewdalpino/ESMC-ProtHash-V1-test", {n: directory / n for n in ("config.json", "model.safetensors")})
    check_against_package(StagedProtHash.from_pretrained("andrewdalpino/ESMC-ProtHash-V1-test"), want, tokens, "hub")


# --- protkit's exports, loaded by the package -----------------------------------------------------------
@pytest.mark.parametrize("name", ["export-tiny", "export-identity"])
def test_export_loads_in_the_package_with_equal_outputs(package_runs, tokens, name) -> None:
    directory, want, model = package_runs[name]
    assert set(json.loads((directory / "config.json").read_text())) == PACKAGE_KEYS
    names = set(load_file(str(directory / "model.safetensors")))
    assert set(cache_names(model.config)) <= names
    assert any(n.startswith("sequence_head.") for n in names) == model.config.mlm_head
    check_against_package(model, want, tokens, name)
    back = StagedProtHash.from_pretrained(directory)  # and back into protkit, exactly
    assert back.config == model.config
    assert all(torch.equal(back.state_dict()[k], v) for k, v in model.state_dict().items())


# --- protkit's own format -----------------------------------------------------------------------------
def test_protkit_format_round_trip(tmp_path, tokens) -> None:
    model = random_model(replace(TINY, stage_layers=(2, 1, 1, 3)), 5)
    model.save_pretrained(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["family"] == "v1" and config["stage_layers"] == [2, 1, 1, 3]
    assert detect_v1_format(tmp_path / "m") == "protkit-v1"
    back = StagedProtHash.from_pretrained(tmp_path / "m")
    assert back.config == model.config
    assert back.state_dict().keys() == model.state_dict().keys()
    assert all(torch.equal(back.state_dict()[k], v) for k, v in model.state_dict().items())
    assert not any("cache" in n or "inv_freq" in n for n in load_file(str(tmp_path / "m" / "model.safetensors")))
    with torch.no_grad():
        x = torch.tensor([tokens[0]])
        assert torch.equal(back.embed_teacher(x, stage=3), model.embed_teacher(x, stage=3))


def test_resolve_loads_either_format_as_a_student(package_runs, tmp_path) -> None:
    random_model(IDENTITY, 3).save_pretrained(tmp_path / "mine")
    for directory, label in ((package_runs["tiny"][0], "prothash-1.0"), (tmp_path / "mine", "protkit-v1")):
        student = load_student(classify_model(directory))
        assert isinstance(student.model, StagedProtHash) and student.format == label
        assert student.quantization is None and len(student.fingerprint) == 64
        with pytest.raises(ModelFormatError, match="ProtHash 1.0 student; int8 is not available"):
            load_student(classify_model(directory), int8=True)


# --- bad files ------------------------------------------------------------------------------------------
def _break(directory: Path, how: str) -> Path:
    """Damage a copy of a package checkpoint; returns the file the error must name."""
    config, weights = directory / "config.json", directory / "model.safetensors"
    if how == "bad json":
        config.write_text('{"embedding_dimensions": 64,\n "num_attention_heads": }')
        return config
    if how == "missing key":
        settings = json.loads(config.read_text())
        del settings["num_stage3_layers"]
        config.write_text(json.dumps(settings))
        return config
    state = load_file(str(weights))
    if how == "missing tensor":
        del state["encoder.stage2.0.stage2.linear2.weight"]
    elif how == "wrong shape":
        state["adapter3.linear.weight"] = state["adapter3.linear.weight"][:, :32].contiguous()
    elif how == "other rotary cache":
        state["encoder.stage4.0.stage1.position_embeddings.sine_cache"] *= 1.01
    else:
        raise AssertionError(how)
    save_file(state, str(weights))
    return weights


@pytest.mark.parametrize("how, detail", [
    ("bad json", "line 2, column"),
    ("missing key", "missing: num_stage3_layers"),
    ("missing tensor", "missing: encoder.stage2.0.stage2.linear2.weight"),
    ("wrong shape", "wrong shape: adapter3.linear.weight (96, 32) (expected (96, 64))"),
    ("other rotary cache", "encoder.stage4.0.stage1.position_embeddings.sine_cache differs"),
])  # fmt: skip
def test_bad_files_raise_model_format_error_naming_the_file(package_runs, tmp_path, how, detail) -> None:
    broken = shutil.copytree(package_runs["tiny"][0], tmp_path / "broken")
    path = _break(broken, how)
    with pytest.raises(ModelFormatError, match=re.escape(str(path))) as info:
        StagedProtHash.from_pretrained(broken)
    assert detail in str(info.value)


def test_protkit_format_bad_config_names_the_key(tmp_path) -> None:
    random_model(IDENTITY, 4).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "stage_layers": [1, 2, 0, 1]}))
    with pytest.raises(ModelFormatError, match=re.escape(str(tmp_path / "config.json")) + ".*stage_layers\\[2\\]"):
        StagedProtHash.from_pretrained(tmp_path)


# --- protkit embed --stage ------------------------------------------------------------------------------
def test_cli_embed_writes_a_stage(package_runs, proteins, tokens, tmp_path, capsys) -> None:
    import pandas as pd

    from protkit.io.metadata import read_protkit_metadata
    from protkit.sequences.fasta import write_fasta

    directory = package_runs["tiny"][0]
    fasta = tmp_path / "proteins.fasta"
    write_fasta(proteins, fasta)
    argv = ["-q", "embed", "--model", str(directory), "--input", str(fasta), "--device", "cpu"]
    assert main([*argv, "--output", str(tmp_path / "s2.parquet"), "--stage", "2"]) == 0
    assert main([*argv, "--output", str(tmp_path / "s4.parquet")]) == 0
    model = StagedProtHash.from_pretrained(directory)
    with torch.no_grad():
        want = {s: torch.cat([model.embed_teacher(torch.tensor([ids]), stage=s) for ids in tokens]) for s in (2, 4)}
    for stage in (2, 4):
        table = pd.read_parquet(tmp_path / f"s{stage}.parquet")
        assert list(table["id"]) == [pid for pid, _ in proteins]
        assert rel_l2(np.stack(table["mean"].to_numpy()), want[stage]) <= TOL
    meta2, meta4 = (read_protkit_metadata(tmp_path / f"s{s}.parquet") for s in (2, 4))
    assert (meta2["stage"], meta4["stage"], meta2["model_format"]) == (2, 4, "prothash-1.0")
    assert meta4["model_fingerprint"] == meta2["weights_sha256"] != meta2["model_fingerprint"]
    # refusals: one error line, exit status 2
    ProtHash(ProtHashConfig(d_model=32, q_heads=4, kv_heads=2, n_layers=1, teacher_dim=48)).save_pretrained(
        tmp_path / "v02")
    capsys.readouterr()
    for model_dir, extra, message in (
        (tmp_path / "v02", ["--stage", "2"], "--stage picks one of the four stages"),
        (directory, ["--int8"], "int8 and the onnxruntime backend are not available"),
        (directory, ["--backend", "onnxruntime"], "int8 and the onnxruntime backend are not available"),
    ):
        status = main(["-q", "embed", "--model", str(model_dir), "--input", str(fasta), "--device", "cpu",
                       "--output", str(tmp_path / "refused.parquet"), *extra])
        err = capsys.readouterr().err.strip().splitlines()
        assert status == 2 and len(err) == 1 and err[0].startswith("protkit: error:") and message in err[0]
        assert not (tmp_path / "refused.parquet").exists()


# --- settings and presets -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_parameter_count_equals_the_built_model(name) -> None:
    for config in (PRESETS[name], replace(PRESETS[name], mlm_head=not PRESETS[name].mlm_head)):
        with torch.device("meta"):
            model = StagedProtHash(config)
        assert model.num_params == config.parameter_count
        assert StagedConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert PRESETS["ProtHash-1.0-960"].rotary_base == PRESETS["ProtHash-1.0-1152"].rotary_base  # both 64-wide heads


@pytest.mark.parametrize("changes, key", [
    (dict(stage_layers=(1, 2, 3)), "stage_layers"),
    (dict(stage_layers=(1, 0, 1, 1)), "stage_layers[1]"),
    (dict(heads=5), "heads"),
    (dict(hidden_ratio=3), "hidden_ratio"),
    (dict(d_model=0), "d_model"),
    (dict(mlm_head="yes"), "mlm_head"),
    (dict(heads=32), "head width"),
])  # fmt: skip
def test_config_errors_name_the_key(changes, key) -> None:
    with pytest.raises(ValueError, match=re.escape(key)):
        replace(TINY, **changes)
    with pytest.raises(ValueError, match="unknown StagedConfig keys: n_layers"):
        StagedConfig.from_dict({"n_layers": 4})


def test_protkit_export_writes_the_package_format(tmp_path, capsys) -> None:
    model = random_model(TINY, 4)
    model.save_pretrained(tmp_path / "mine")
    assert main(["-q", "export", "--model", str(tmp_path / "mine"), "--format", "prothash",
                 "--output", str(tmp_path / "out")]) == 0
    assert detect_v1_format(tmp_path / "out") == "prothash-1.0"
    assert set(json.loads((tmp_path / "out" / "config.json").read_text())) == PACKAGE_KEYS
    back = StagedProtHash.from_pretrained(tmp_path / "out")
    assert all(torch.equal(back.state_dict()[k], v) for k, v in model.state_dict().items())
    assert main(["export", "--model", str(tmp_path / "mine"), "--format", "onnx",
                 "--output", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("protkit: error: ") and "exports to --format prothash only" in err[-1]
    assert not (tmp_path / "m.onnx").exists()
