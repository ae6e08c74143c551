"""The prothash package's checkpoints: load (0.1.x absolute, 0.2.x rotary), export, refusals, bad files.

The real package (``prothash`` from PyPI) is installed once per session into a temporary
directory and run in a subprocess (``PYTHONPATH=<target>``): 0.1.2 and 0.2.1 share the module
name ``prothash.model``, and the subprocess keeps them apart and out of this process. The
package embeds one sequence at a time (it has no padding mask); protkit must match it per
sequence, and its own padded batches must match its single sequences.
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
from protkit.models.prothash.checkpoint import PROTHASH_KEYS, ModelFormatError, detect_format, format_label
from protkit.models.prothash.config import ProtHashConfig
from protkit.models.prothash.convert import export_prothash
from protkit.models.prothash.model import ProtHash, load_pretrained_dir
from protkit.sequences.tokenize import encode_batch, encode_one

VERSIONS = ("0.2.1", "0.1.2")  # rotary, absolute
CONTEXT = 512
N_PROTEINS = 24
TOL = 1e-5  # relative L2 per sequence, fp32

# Package constructor arguments: a head (64 -> 128) and an identity head (64 == 64).
PACKAGE_CONFIGS = {
    "head": dict(vocabulary_size=33, padding_index=1, context_length=CONTEXT, teacher_dimensions=128,
                 embedding_dimensions=64, q_heads=4, kv_heads=2, hidden_ratio=2, num_encoder_layers=2, dropout=0.0),
    "identity": dict(vocabulary_size=33, padding_index=1, context_length=CONTEXT, teacher_dimensions=64,
                     embedding_dimensions=64, q_heads=8, kv_heads=8, hidden_ratio=4, num_encoder_layers=2, dropout=0.0),
}  # fmt: skip

# Runs inside the package's subprocess: build a seeded random model (saved) or load a directory,
# then embed every token list one at a time.
DRIVER = '''
import json, sys
import numpy as np
import torch
from prothash.model import ProtHash

jobs = json.loads(open(sys.argv[1]).read())
tokens = json.loads(open(sys.argv[2]).read())
for job in jobs:
    if job["mode"] == "build":
        torch.manual_seed(job["seed"])
        model = ProtHash(**job["config"])
        with torch.no_grad():  # norms away from 1, so that swapped norms would show
            for name, p in model.named_parameters():
                if "norm" in name:
                    p.copy_(1 + 0.3 * torch.randn_like(p))
        model.save_pretrained(job["dir"])
    else:
        model = ProtHash.from_pretrained(job["dir"])
    model.eval()
    teacher = [model.embed_teacher(torch.tensor([ids]))[0].numpy() for ids in tokens]
    native = [model.embed_native(torch.tensor([ids]))[0].numpy() for ids in tokens]
    np.savez(job["out"], teacher=np.stack(teacher), native=np.stack(native))
'''


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


# --- the package, in a subprocess -----------------------------------------------------------------
@pytest.fixture(scope="session")
def prothash_packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``version -> install target`` of the real prothash package (pip, --no-deps)."""
    targets = {}
    for version in VERSIONS:
        target = tmp_path_factory.mktemp(f"prothash-{version}")
        result = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--disable-pip-version-check",
             "--target", str(target), f"prothash=={version}"],
            capture_output=True, text=True,
        )  # fmt: skip
        if result.returncode != 0:
            reason = f"cannot install prothash=={version} from PyPI: {result.stderr.strip()[-500:]}"
            if os.environ.get("PROTKIT_REQUIRE_PROTHASH") == "1":
                pytest.fail(reason + " (PROTKIT_REQUIRE_PROTHASH=1)")
            pytest.skip(reason)
        targets[version] = target
    return targets


def run_package(target: Path, jobs: list[dict], tokens: list[list[int]], workdir: Path) -> list[dict[str, np.ndarray]]:
    """Run :data:`DRIVER` with the package at ``target``; per job ``{"teacher": (N, T), "native": (N, D)}``."""
    workdir.mkdir(parents=True, exist_ok=True)
    for i, job in enumerate(jobs):
        job["out"] = str(workdir / f"out-{i}.npz")
    (workdir / "driver.py").write_text(DRIVER)
    (workdir / "jobs.json").write_text(json.dumps(jobs))
    (workdir / "tokens.json").write_text(json.dumps(tokens))
    env = {**os.environ, "PYTHONPATH": str(target), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, str(workdir / "driver.py"), str(workdir / "jobs.json"), str(workdir / "tokens.json")],
        capture_output=True, text=True, env=env,
    )
    assert result.returncode == 0, f"prothash driver failed:\n{result.stderr[-3000:]}"
    return [dict(np.load(job["out"])) for job in jobs]


# --- data ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def proteins(shared_records) -> list[tuple[str, str]]:
    """``N_PROTEINS`` real DeepLoc proteins (id, sequence), lengths spread up to the context."""
    fitting = sorted((r for r in shared_records if len(r.sequence) <= CONTEXT - 2), key=lambda r: len(r.sequence))
    picks = np.unique(np.linspace(0, len(fitting) - 1, N_PROTEINS).round().astype(int))
    return [(fitting[i].id, fitting[i].sequence) for i in picks]


@pytest.fixture(scope="module")
def tokens(proteins) -> list[list[int]]:
    return [encode_one(seq) for _, seq in proteins]


@pytest.fixture(scope="module")
def package_models(prothash_packages, tokens, tmp_path_factory) -> dict[tuple[str, str], tuple[Path, dict]]:
    """``(version, config name) -> (directory written by the package, its single-sequence vectors)``."""
    out = {}
    for version, target in prothash_packages.items():
        root = tmp_path_factory.mktemp(f"package-{version}")
        jobs = [{"mode": "build", "config": cfg, "seed": i, "dir": str(root / name)}
                for i, (name, cfg) in enumerate(PACKAGE_CONFIGS.items())]
        for (name, _), job, vectors in zip(PACKAGE_CONFIGS.items(), jobs, run_package(target, jobs, tokens, root)):
            out[version, name] = (Path(job["dir"]), vectors)
    return out


def rel_l2(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    """Relative L2 error per row.  # (N,)"""
    return np.linalg.norm(got - want, axis=-1) / np.linalg.norm(want, axis=-1)


def single_cls(model: ProtHash, tokens: list[list[int]], teacher: bool) -> np.ndarray:
    """protkit's CLS vectors, one sequence at a time (no padding).  # (N, D)"""
    embed = model.embed_teacher if teacher else model.embed_native
    with torch.no_grad():
        return np.stack([embed(torch.tensor([ids]), pooling="cls")[0].numpy() for ids in tokens])


# --- loading the package's checkpoints ------------------------------------------------------------------
@pytest.mark.parametrize("name", list(PACKAGE_CONFIGS))
@pytest.mark.parametrize("version", VERSIONS)
def test_package_checkpoint_matches_the_package(package_models, tokens, proteins, version, name) -> None:
    directory, want = package_models[version, name]
    assert detect_format(directory) == "prothash"
    assert format_label(directory) == f"prothash-{version[:3]}"
    model = ProtHash.from_pretrained(directory)
    cfg = PACKAGE_CONFIGS[name]
    assert model.config.positions == ("rotary" if version.startswith("0.2") else "absolute")
    assert (model.config.d_model, model.config.teacher_dim) == (cfg["embedding_dimensions"], cfg["teacher_dimensions"])
    assert model.config.teacher == "unknown" and not model.config.adapter_bias
    assert isinstance(model.adapter, torch.nn.Identity) == (name == "identity")
    for teacher, key in ((True, "teacher"), (False, "native")):
        errors = rel_l2(single_cls(model, tokens, teacher), want[key])
        print(f"prothash {version} {name} {key}: max relative L2 {errors.max():.2e}")
        assert errors.max() <= TOL, f"{proteins[int(errors.argmax())][0]}: {errors.max():.2e}"
    # protkit's padded batches give its single-sequence vectors
    batch = encode_batch([seq for _, seq in proteins])
    with torch.no_grad():
        for pooling in ("cls", "mean"):
            for embed in (model.embed_teacher, model.embed_native):
                batched = embed(batch.input_ids, batch.attention_mask, pooling).numpy()
                single = np.stack([embed(torch.tensor([ids]), pooling=pooling)[0].numpy() for ids in tokens])
                assert rel_l2(batched, single).max() <= TOL


@pytest.mark.parametrize("version", VERSIONS)
def test_package_checkpoint_from_a_hub_id(package_models, tokens, offline_hub, version) -> None:
    directory, want = package_models[version, "head"]
    repo_id = f"andrewdalpino/ProtHash-{'V2-' if version.startswith('0.2') else ''}64-Tiny-test"
    offline_hub(repo_id, {name: directory / name for name in ("config.json", "model.safetensors")})
    model = ProtHash.from_pretrained(repo_id)
    assert rel_l2(single_cls(model, tokens, teacher=True), want["teacher"]).max() <= TOL


@pytest.mark.parametrize("version", VERSIONS)
def test_cli_embeds_a_package_checkpoint(package_models, proteins, tmp_path, version) -> None:
    import pandas as pd

    from protkit.sequences.fasta import write_fasta

    directory, want = package_models[version, "head"]
    write_fasta(proteins, tmp_path / "proteins.fasta")
    status = main(["-q", "embed", "--model", str(directory), "--input", str(tmp_path / "proteins.fasta"),
                   "--output", str(tmp_path / "out.parquet"), "--pooling", "cls", "--device", "cpu"])
    assert status == 0
    table = pd.read_parquet(tmp_path / "out.parquet")
    assert list(table["id"]) == [pid for pid, _ in proteins]
    assert rel_l2(np.stack(table["cls"].to_numpy()), want["teacher"]).max() <= 1e-4


# --- exporting protkit models --------------------------------------------------------------------------
EXPORTS = {  # name -> (ProtHashConfig changes, package version that loads it)
    "rotary": (dict(positions="rotary"), "0.2.1"),
    "absolute": (dict(positions="absolute"), "0.1.2"),
    "identity": (dict(positions="rotary", teacher_dim=64, q_heads=8, kv_heads=4), "0.2.1"),
}
EXPORT_BASE = dict(d_model=64, q_heads=4, kv_heads=2, n_layers=2, teacher_dim=128, context_length=CONTEXT)


def random_student(seed: int, **changes) -> ProtHash:
    """A seeded protkit student with norms away from 1."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ProtHash(ProtHashConfig(**{**EXPORT_BASE, **changes})).eval()
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "norm" in name:
                    p.copy_(1 + 0.3 * torch.randn_like(p))
    return model


@pytest.fixture(scope="module")
def exported(prothash_packages, tokens, tmp_path_factory) -> dict[str, tuple[ProtHash, Path, dict]]:
    """``name -> (protkit model, its export, the package's vectors of the export)``."""
    root = tmp_path_factory.mktemp("exported")
    models, dirs = {}, {}
    for i, (name, (changes, _)) in enumerate(EXPORTS.items()):
        models[name] = random_student(10 + i, **changes)
        if name == "identity":  # from a model in memory
            dirs[name] = export_prothash(models[name], root / name)
        else:  # from a saved directory, through `protkit export`
            models[name].save_pretrained(root / f"protkit-{name}")
            argv = ["-q", "export", "--model", str(root / f"protkit-{name}"), "--format", "prothash"]
            assert main([*argv, "--output", str(root / name)]) == 0
            dirs[name] = root / name
    out = {}
    for version in VERSIONS:
        names = [n for n, (_, v) in EXPORTS.items() if v == version]
        jobs = [{"mode": "load", "dir": str(dirs[n])} for n in names]
        for n, vectors in zip(names, run_package(prothash_packages[version], jobs, tokens, root / f"run-{version}")):
            out[n] = (models[n], dirs[n], vectors)
    return out


@pytest.mark.parametrize("name", list(EXPORTS))
def test_export_loads_in_the_package_with_the_same_vectors(exported, tokens, name) -> None:
    model, directory, want = exported[name]
    assert set(json.loads((directory / "config.json").read_text())) == PROTHASH_KEYS
    names = set(load_file(str(directory / "model.safetensors")))
    inv_freq = {f"encoder.layers.{i}.stage1.position_embeddings.inv_freq" for i in range(2)}
    assert inv_freq <= names if model.config.positions == "rotary" else "position_embeddings.weight" in names
    assert ("head.linear.weight" in names) == (name != "identity")
    for teacher, key in ((True, "teacher"), (False, "native")):
        errors = rel_l2(single_cls(model, tokens, teacher), want[key])
        print(f"export {name} {key}: max relative L2 {errors.max():.2e}")
        assert errors.max() <= TOL
    back = load_pretrained_dir(directory)  # and back into protkit, exactly
    assert back.config == replace(model.config, teacher="unknown")
    assert all(torch.equal(back.state_dict()[k], v) for k, v in model.state_dict().items())


def test_export_names_the_teacher_from_its_width(tmp_path) -> None:
    model = random_student(0, d_model=32, n_layers=1, teacher_dim=960)
    assert load_pretrained_dir(export_prothash(model, tmp_path / "out")).config.teacher == "esmc_300m"


def test_export_refuses_what_prothash_cannot_express(model_dir, tmp_path) -> None:
    from protkit.models.prothash.int8 import quantize_model

    with pytest.raises(ModelFormatError, match="adapter has a bias.*adapter_bias: false"):
        export_prothash(random_student(0, adapter_bias=True), tmp_path / "a")
    with pytest.raises(ModelFormatError, match=re.escape(f"{model_dir / 'int8'}: an int8 artifact")):
        export_prothash(model_dir / "int8", tmp_path / "b")
    with pytest.raises(ModelFormatError, match="quantized weights"):
        export_prothash(quantize_model(ProtHash.from_pretrained(model_dir)), tmp_path / "c")
    with pytest.raises(ModelFormatError, match="vocab_size 40"):
        export_prothash(random_student(0, vocab_size=40), tmp_path / "d")
    assert not any((tmp_path / d).exists() for d in "abcd")


def test_loading_refuses_other_rotary_frequencies_and_vocabularies(exported, tmp_path) -> None:
    _, directory, _ = exported["rotary"]
    shutil.copytree(directory, tmp_path / "freq")
    weights = tmp_path / "freq" / "model.safetensors"
    state = load_file(str(weights))
    state["encoder.layers.1.stage1.position_embeddings.inv_freq"] *= 1.01
    save_file(state, str(weights))
    message = f"{weights}: encoder.layers.1.stage1.position_embeddings.inv_freq differs"
    with pytest.raises(ModelFormatError, match=re.escape(message)):
        ProtHash.from_pretrained(tmp_path / "freq")
    shutil.copytree(directory, tmp_path / "vocab")
    config = json.loads((tmp_path / "vocab" / "config.json").read_text())
    (tmp_path / "vocab" / "config.json").write_text(json.dumps({**config, "vocabulary_size": 40}))
    with pytest.raises(ModelFormatError, match=r"config\.json: vocabulary_size 40.*33-token"):
        ProtHash.from_pretrained(tmp_path / "vocab")


# --- protkit's own format --------------------------------------------------------------------------------
def test_old_protkit_configs_load_with_a_biased_adapter(tmp_path) -> None:
    model = random_student(1, adapter_bias=True)
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    del config["adapter_bias"]  # written before the option existed
    (tmp_path / "config.json").write_text(json.dumps(config))
    loaded = ProtHash.from_pretrained(tmp_path)
    assert loaded.config.adapter_bias and loaded.adapter.bias is not None
    assert torch.equal(loaded.adapter.bias, model.adapter.bias)
    assert detect_format(tmp_path) == format_label(tmp_path) == "protkit"
    assert ProtHashConfig().adapter_bias is False and ProtHash(ProtHashConfig()).adapter.bias is None


# --- bad files ---------------------------------------------------------------------------------------------
def _break(directory: Path, how: str) -> Path:
    """Damage a copy of a checkpoint directory; returns the file the error must name."""
    config, weights = directory / "config.json", directory / "model.safetensors"
    if how == "config not json":
        config.write_text('{"d_model": 64,\n "n_layers": }')
        return config
    if how == "config a list":
        config.write_text("[1, 2]")
        return config
    if how == "unknown keys":
        config.write_text(json.dumps({"hidden_size": 64, "num_hidden_layers": 2}))
        return config
    if how == "prothash 1.x keys":
        config.write_text(json.dumps({"embedding_dimensions": 64, "num_attention_heads": 4, "num_stage1_layers": 1}))
        return config
    if how == "truncated weights":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
        return weights
    if how == "random weights":
        weights.write_bytes(np.random.default_rng(0).bytes(4096))
        return weights
    if how == "missing weights":
        weights.unlink()
        return weights
    if how == "missing tensor":
        state = load_file(str(weights))
        del state["encoder.layers.1.stage2.linear2.weight"]
        save_file(state, str(weights))
        return weights
    if how == "shape mismatch":
        settings = json.loads(config.read_text())
        config.write_text(json.dumps({**settings, "hidden_ratio": 4}))
        return weights
    raise AssertionError(how)


@pytest.mark.parametrize("how", [
    "config not json", "config a list", "unknown keys", "prothash 1.x keys", "truncated weights", "random weights",
    "missing weights", "missing tensor", "shape mismatch",
])  # fmt: skip
def test_bad_files_raise_model_format_error_naming_the_file(package_models, tmp_path, how) -> None:
    directory, _ = package_models["0.2.1", "head"]
    broken = shutil.copytree(directory, tmp_path / "broken")
    path = _break(broken, how)
    with pytest.raises(ModelFormatError, match=re.escape(str(path))) as info:
        ProtHash.from_pretrained(broken)
    message = str(info.value)
    if how == "config not json":
        assert "line 2, column" in message
    if how in ("unknown keys", "prothash 1.x keys"):
        assert "hidden_size" in message or "num_attention_heads" in message
        assert "embedding_dimensions" in message and "d_model" in message  # both expected key sets
    if how == "missing tensor":
        assert "missing: encoder.layers.1.stage2.linear2.weight" in message
    if how == "shape mismatch":
        assert "wrong shape: encoder.layers.0.stage2.linear1.weight" in message


def test_protkit_format_missing_tensor_names_the_file(tmp_path) -> None:
    random_student(2).save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    state = load_file(str(weights))
    del state["blocks.0.norm1.weight"]
    save_file(state, str(weights))
    with pytest.raises(ModelFormatError, match=re.escape(str(weights)) + r": .*missing: blocks\.0\.norm1\.weight"):
        ProtHash.from_pretrained(tmp_path)


@pytest.mark.parametrize("config_file", ["config/config.yaml", "config/demo.yaml"])
def test_every_variant_the_default_configs_train_exports_exactly(repo_root, config_file, tmp_path) -> None:
    """Each variant's architecture, as distillation builds it (random weights), exports to the
    prothash format (1.0's for a v1 variant) and reads back with the same CLS vectors (the package
    parity is tested above and in test_prothash_v1.py)."""
    from protkit import config as config_module
    from protkit.distill.config import build_model_config
    from protkit.models.esmc.model import ESMC_PRESETS
    from protkit.models.prothash_v1 import StagedConfig, StagedProtHash, export_prothash_v1, load_staged_dir

    config = config_module.load(repo_root / config_file)
    ids = torch.tensor([encode_one("MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ")])  # (1, L)
    for name, variant in config["variants"].items():
        teacher = config["teachers"][variant["teacher"]]
        width = teacher["random"]["d_model"] if teacher["weights"] == "random" else ESMC_PRESETS[teacher["weights"]].d_model
        settings = build_model_config(variant, width, variant["teacher"], f"variants.{name}")
        staged = isinstance(settings, StagedConfig)  # a ProtHash 1.0 variant: the 1.0 package's format
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = (StagedProtHash if staged else ProtHash)(settings).eval()
        exported = load_staged_dir(export_prothash_v1(model, tmp_path / name)) if staged else \
            load_pretrained_dir(export_prothash(model, tmp_path / name))
        with torch.no_grad():
            want, got = model.embed_teacher(ids, pooling="cls"), exported.embed_teacher(ids, pooling="cls")
        assert rel_l2(got.numpy(), want.numpy()).max() <= TOL, name
