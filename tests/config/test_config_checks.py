"""protkit.config: one check of the whole configuration, at plan time. A bad training or
architecture key or value, and the cross-field rules the distill job used to find hours later,
fail ``snakemake -n`` with one message naming the key."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from pipeline_fixtures import REPO, planned_jobs, snakemake, tiny_config, write_config
from protkit.config import ConfigError, load, schema_path, validate


def _variant(config: dict) -> dict:
    return config["variants"]["v0"]


def architecture(**settings):
    """A change of variant v0's architecture section."""
    return lambda config: _variant(config)["architecture"].update(settings)


def training(**settings):
    """A change of variant v0's training section."""
    return lambda config: _variant(config)["training"].update(settings)


def finetune(**settings):
    """A fine-tuning task of v0 on a labelled FASTA file, changed by ``settings``."""
    task = {"model": "v0", "train": "labels.fasta", "label_regex": r"-([MS])\b"}
    return lambda config: config.setdefault("finetune", {}).update(membrane={**task, **settings})


CASES = {
    "q_heads_not_dividing_width": (
        architecture(d_model=64, q_heads=3), "variants.v0.architecture: d_model (64) must be divisible by q_heads (3)"),
    "kv_heads_not_dividing_q_heads": (
        architecture(d_model=64, q_heads=4, kv_heads=3),
        "variants.v0.architecture: q_heads (4) must be a multiple of kv_heads (3)"),
    "unknown_training_key": (
        training(lerning_rate=0.1),
        "variants.v0.training: Additional properties are not allowed ('lerning_rate' was unexpected)"),
    "training_value": (
        training(betas=[0.9, 1.5]), "variants.v0.training.betas must be two numbers in [0, 1), got [0.9, 1.5]"),
    "no_pooling_weight": (
        training(pooling_weights={"cls": 0, "mean": 0}),
        "variants.v0.training.pooling_weights are all 0: nothing to train"),
    "both_loss_weights_zero": (
        training(cosine_weight=0, mse_weight=0), "variants.v0.training.cosine_weight and mse_weight are both 0"),
    "training_max_length_not_the_cache's": (
        training(max_length=100),
        "variants.v0.training.max_length is 100 but the teacher cache is built with max_length 202"),
    "context_shorter_than_the_data": (
        architecture(context_length=128),
        "variants.v0.architecture.context_length (128) is shorter than the teacher cache's max_length (202"),
    "pooling_not_cached": (
        lambda c: c["teachers"]["demo_esmc"].update(poolings=["mean"]),
        "variants.v0.training.poolings: cls not cached by the teacher"),
    "tokens_objective_without_tokens": (
        training(objective="tokens"),
        "variants.v0.training.objective is 'tokens' but the teacher cache holds no per-residue embeddings"),
    "qat_group_size": (
        lambda c: _variant(c).update(qat={"enabled": True, "group_size": 24}),
        "variants.v0.qat.group_size = 24 does not divide the input width"),
    "qat_unknown_key": (
        lambda c: _variant(c).update(qat={"enabeld": True}),
        "variants.v0.qat: Additional properties are not allowed ('enabeld' was unexpected)"),
    "preset_for_another_teacher": (
        lambda c: c["variants"].update(v2={"teacher": "real", "preset": "ProtHash-V2-384"})
        or c["teachers"].update(real={"weights": "esmc_600m"}),
        "variants.v2.preset ProtHash-V2-384 is built for teacher_dim 960 (esmc_300m) but the teacher cache has "
        "d_model 1152"),
    "random_teacher_heads": (
        lambda c: c["teachers"]["demo_esmc"]["random"].update(n_heads=3),
        "teachers.demo_esmc.random: d_model (64) must be n_heads (3) times an even head width"),
    "evaluate_pooling_not_cached": (
        lambda c: (c["teachers"]["demo_esmc"].update(poolings=["mean"]),
                   [v["training"].update(poolings=["mean"]) for v in c["variants"].values()]),
        "evaluate.poolings: cls not cached by teachers.demo_esmc"),
    "too_large_to_train": (
        architecture(n_layers=100_000_000), "variants.v0.architecture: 723,200,003,104 parameters need about"),
    "zero_kv_heads": (
        architecture(kv_heads=0), "variants.v0.architecture.kv_heads: 0 is less than the minimum of 1"),
    "width_as_a_string": (
        architecture(d_model="64"), "variants.v0.architecture.d_model: '64' is not of type 'integer'"),
    "random_teacher_too_large": (
        lambda c: c["teachers"]["demo_esmc"]["random"].update(n_layers=10_000_000),
        "teachers.demo_esmc.random: "),
    "finetune_int8_model": (
        finetune(model="v0-int8"),
        "finetune.membrane.model: 'v0-int8' is an int8 model, whose 8-bit weights cannot be trained; fine-tune its "
        "fp32 variant 'v0'"),
    "finetune_unknown_model": (
        finetune(model="v9"), "finetune.membrane.model: 'v9' names no variant (v0, v1) and no teacher (demo_esmc)"),
    "finetune_fasta_without_regex": (
        finetune(label_regex=None), "finetune.membrane.label_regex: labels.fasta: a FASTA file needs label_regex"),
    "finetune_regex_groups": (
        finetune(label_regex="(M)(S)"), "finetune.membrane.label_regex: label_regex '(M)(S)' needs exactly one"),
    "finetune_table_without_columns": (
        finetune(train="labels.tsv", label_regex=None),
        "finetune.membrane.label_columns: required for a table (labels.tsv)"),
    "finetune_tokens_from_fasta": (
        finetune(task="tokens"), "finetune.membrane.task: tokens reads per-residue labels from a table column"),
    "finetune_two_test_sets": (
        finetune(test="other.fasta", test_fraction=0.2),
        "finetune.membrane: give test (a file) or test_fraction (a share of train), not both"),
    "finetune_unknown_key": (
        finetune(lora_rank=4), "finetune.membrane: Additional properties are not allowed ('lora_rank' was unexpected)"),
    "missing_weights_file": (
        lambda c: c["teachers"]["demo_esmc"].update(weights="weights/absent.safetensors"),
        "teachers.demo_esmc.weights: weights/absent.safetensors does not exist (relative to"),
    "missing_data_file": (
        lambda c: c["data"].update(paths=["absent.fasta"]), "data.paths[0]: absent.fasta does not exist"),
    "missing_package_file": (
        lambda c: c["data"].update(paths=["pyhmmer:tests/absent.faa"]),
        "data.paths[0]: data path 'pyhmmer:tests/absent.faa': tests/absent.faa not found in package pyhmmer"),
    "missing_embed_input": (
        lambda c: c["embed"]["inputs"].update(mine="/nowhere/mine.fasta"),
        "embed.inputs.mine: /nowhere/mine.fasta does not exist"),
    "missing_query_file": (
        lambda c: c["search"]["queries"].update(LuxC="absent/LuxC.faa"), "search.queries.LuxC: absent/LuxC.faa"),
    "missing_required_probe_file": (
        lambda c: c["probes"]["deeploc_membrane"].update(path="absent.fasta", optional=False),
        "probes.deeploc_membrane.path: absent.fasta does not exist"),
    "missing_required_finetune_file": (
        finetune(train="absent.fasta"), "finetune.membrane.train: absent.fasta does not exist"),
    "probe_regex": (
        lambda c: c["probes"]["deeploc_membrane"].update(label_regex="(a)(b)"),
        "probes.deeploc_membrane.label_regex: '(a)(b)' needs exactly one capture group"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_validate_names_the_key(case: str) -> None:
    change, expected = CASES[case]
    config = tiny_config()
    change(config)
    with pytest.raises(ConfigError) as error:
        validate(config)
    message = str(error.value)
    assert expected in message
    first, *problems = message.splitlines()
    assert first == "invalid configuration:" and problems
    assert all(re.match(r"  [a-z_]+[.\[:]", line) for line in problems), f"each line names a key:\n{message}"


def test_every_shipped_config_is_valid() -> None:
    for name in ("config.yaml", "demo.yaml"):
        load(REPO / "config" / name)
    validate(tiny_config())


def test_the_schema_declares_no_default_a_dataclass_holds() -> None:
    """architecture, training, qat, probes and finetune tasks take their defaults from ProtHashConfig,
    TrainConfig, QATSettings, ProbeSpec and FinetuneSettings; the schema only describes them."""
    schema = yaml.safe_load(schema_path().read_text())
    variant = schema["properties"]["variants"]["additionalProperties"]["properties"]
    sections = [variant["architecture"], variant["training"], variant["qat"],
                schema["properties"]["probes"]["additionalProperties"],
                schema["properties"]["finetune"]["additionalProperties"]]
    defaults = [(key, spec["default"]) for section in sections for key, spec in section["properties"].items()
                if "default" in spec]
    assert defaults == []


def test_defaults_are_filled_once_and_match_the_dataclasses() -> None:
    from protkit.distill.qat import QATSettings

    config = tiny_config()
    del config["variants"]["v0"]["qat"]
    validate(config)
    assert "qat" not in config["variants"]["v0"]  # nothing filled in by the schema
    assert QATSettings.from_dict(config["variants"]["v0"].get("qat")) == QATSettings()
    assert config["teachers"]["demo_esmc"]["jobs"] == 1  # workflow-only keys: the schema's defaults


def test_optional_files_may_be_absent() -> None:
    config = tiny_config()
    config["probes"]["deeploc_membrane"].update(path="absent.fasta", optional=True)
    config["finetune"]["start_codon"].update(train="absent.fasta", optional=True)
    validate(config)
    assert validate(copy.deepcopy(tiny_config()) | {"data": {**tiny_config()["data"], "paths": ["absent.fasta"]}},
                    check_files=False)


@pytest.mark.parametrize("case", ["q_heads_not_dividing_width", "kv_heads_not_dividing_q_heads", "training_value",
                                  "missing_weights_file", "missing_data_file"])
def test_snakemake_dry_run_refuses_before_planning(tmp_path: Path, case: str) -> None:
    change, expected = CASES[case]
    config = copy.deepcopy(tiny_config())
    change(config)
    result = snakemake(tmp_path, write_config(tmp_path, config), "-n", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert output.count(expected) == 1, output[-3000:]
    assert planned_jobs(result) == {} and "Traceback" not in output
