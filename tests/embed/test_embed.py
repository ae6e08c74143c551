"""protkit.embed: FASTA -> parquet in FASTA order, duplicates, over-long policies, fp16, shards,
atomicity and resume, int8 and model loading."""

from __future__ import annotations

import logging
import random
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from tiny_models import TINY_STUDENT

from protkit.embed.embedder import EmbedError
from protkit.embed.loading import load_embedder
from protkit.embed.parts import work_dir
from protkit.embed.plan import shard_records
from protkit.embed.run import embed_fasta
from protkit.embed.shards import embed_shard, gather_shards
from protkit.io.digests import file_sha256
from protkit.io.metadata import read_protkit_metadata
from protkit.models.prothash.checkpoint import ModelFormatError
from protkit.models.prothash.config import ProtHashConfig
from protkit.models.prothash.model import ProtHash
from protkit.sequences.fasta import write_fasta
from protkit.sequences.tokenize import encode_batch

TINY = ProtHashConfig(**TINY_STUDENT)
AMINO = "ACDEFGHIKLMNPQRSTVWY"


def random_protein(rng: random.Random, length: int) -> str:
    return "".join(rng.choice(AMINO) for _ in range(length))


def load_model(model, **options):
    return load_embedder(model, backend="torch", device="cpu", **options)


@pytest.fixture(scope="module")
def fp32(model_dir: Path):
    return load_model(model_dir)


@pytest.fixture(scope="module")
def records() -> list[tuple[str, str]]:
    """30 proteins of 5..400 residues, with two exact duplicates and one lower-case/stop-codon twin."""
    rng = random.Random(1)
    recs = [(f"p{i:02d}", random_protein(rng, rng.randint(5, 400))) for i in range(30)]
    recs[7] = ("dup_of_p03", recs[3][1])
    recs[20] = ("dup2_of_p03", recs[3][1])
    recs[25] = ("twin_of_p10", recs[10][1].lower() + "*")
    return recs


@pytest.fixture(scope="module")
def fasta(tmp_path_factory: pytest.TempPathFactory, records) -> Path:
    path = tmp_path_factory.mktemp("fasta") / "proteins.fasta"
    write_fasta(records, path)
    return path


def alone(model: ProtHash, sequence: str, pooling: str, max_length: int | None = None) -> np.ndarray:
    """The teacher-space vector of one sequence embedded on its own.  # (D,)"""
    batch = encode_batch([sequence], max_length)
    with torch.no_grad():
        return model.embed_teacher(batch.input_ids, batch.attention_mask, pooling)[0].numpy()


def vectors(path: Path, pooling: str) -> np.ndarray:
    return np.stack(pq.read_table(path).column(pooling).to_numpy(zero_copy_only=False)).astype(np.float32)


def test_rows_in_fasta_order_equal_one_at_a_time(fp32, fasta, records, tmp_path):
    out = embed_fasta(fp32, fasta, tmp_path / "e.parquet", poolings=("mean", "cls"), max_tokens=1500)
    table = pq.read_table(out)
    assert table.column_names == ["id", "length", "truncated", "mean", "cls"]
    assert table.column("id").to_pylist() == [rid for rid, _ in records]
    assert table.column("length").to_pylist() == [len(s.rstrip("*")) for _, s in records]
    assert not any(table.column("truncated").to_pylist())
    for pooling in ("mean", "cls"):
        got = vectors(out, pooling)
        assert got.shape == (len(records), TINY.teacher_dim)
        want = np.stack([alone(fp32.model, s.upper().rstrip("*"), pooling) for _, s in records])
        np.testing.assert_allclose(got, want, atol=1e-5)
    assert not np.allclose(vectors(out, "mean")[0], vectors(out, "mean")[1])


def test_metadata_identifies_model_and_settings(fp32, model_dir, fasta, tmp_path):
    out = embed_fasta(fp32, fasta, tmp_path / "e.parquet", poolings=("cls",), metadata={"run": "x"})
    meta = read_protkit_metadata(out)
    assert meta["model_fingerprint"] == file_sha256(model_dir / "model.safetensors")
    assert (meta["poolings"], meta["int8"], meta["quantization"]) == (["cls"], False, None)
    assert (meta["dim"], meta["max_length"], meta["run"]) == (64, TINY.context_length, "x")
    assert meta["protkit_version"] == __import__("protkit").__version__


def test_duplicates_embedded_once_but_repeated_in_order(fp32, fasta, records, tmp_path):
    rows_seen: list[int] = []
    hook = fp32.model.register_forward_hook(lambda mod, args, out: rows_seen.append(args[0].shape[0]))
    try:
        out = embed_fasta(fp32, fasta, tmp_path / "e.parquet", max_tokens=2000)
    finally:
        hook.remove()
    assert sum(rows_seen) == len(records) - 3  # p03 twice more, p10's lower-case twin
    got = vectors(out, "mean")
    np.testing.assert_array_equal(got[7], got[3])
    np.testing.assert_array_equal(got[20], got[3])
    np.testing.assert_array_equal(got[25], got[10])
    assert read_protkit_metadata(out)["n_unique"] == len(records) - 3


def test_overlength_truncate_drop_error(fp32, tmp_path):
    rng = random.Random(2)
    recs = [("short", random_protein(rng, 20)), ("long", random_protein(rng, 60)), ("mid", random_protein(rng, 30))]
    path = tmp_path / "x.fasta"
    write_fasta(recs, path)

    out = embed_fasta(fp32, path, tmp_path / "t.parquet", max_length=42, overlength="truncate")
    table = pq.read_table(out)
    assert table.column("truncated").to_pylist() == [False, True, False]
    assert table.column("length").to_pylist() == [20, 60, 30]
    np.testing.assert_allclose(vectors(out, "mean")[1], alone(fp32.model, recs[1][1][:40], "mean"), atol=1e-5)

    out = embed_fasta(fp32, path, tmp_path / "d.parquet", max_length=42, overlength="drop")
    assert pq.read_table(out).column("id").to_pylist() == ["short", "mid"]
    assert read_protkit_metadata(out)["dropped"] == [{"id": "long", "line": 3, "residues": 60}]

    with pytest.raises(EmbedError, match=r"x\.fasta line 3, id long: 60 residues .* exceed max_length 42"):
        embed_fasta(fp32, path, tmp_path / "e.parquet", max_length=42, overlength="error")
    assert not (tmp_path / "e.parquet").exists()
    with pytest.raises(EmbedError, match="context length 512"):
        embed_fasta(fp32, path, tmp_path / "e.parquet", max_length=600)


def test_fp16_storage(fp32, fasta, tmp_path):
    full = embed_fasta(fp32, fasta, tmp_path / "a.parquet", store_dtype="fp32")
    half = embed_fasta(fp32, fasta, tmp_path / "b.parquet", store_dtype="fp16")
    assert str(pq.read_schema(half).field("mean").type.value_type) == "halffloat"
    assert str(pq.read_schema(full).field("mean").type.value_type) == "float"
    np.testing.assert_allclose(vectors(half, "mean"), vectors(full, "mean"), rtol=2e-3, atol=1e-4)
    assert half.stat().st_size < full.stat().st_size


def test_shards_gather_to_the_unsharded_output(fp32, fasta, records, tmp_path):
    whole = embed_fasta(fp32, fasta, tmp_path / "whole.parquet", poolings=("mean", "cls"))
    assert [i for i, _ in shard_records(fasta, 1, 3)] == list(range(1, len(records), 3))
    shards = [embed_shard(fp32, fasta, tmp_path / "shards", i, 3, poolings=("mean", "cls")) for i in range(3)]
    assert [p.name for p in shards] == [f"shard-{i}-of-3.parquet" for i in range(3)]
    assert pq.read_table(shards[1]).column("index").to_pylist() == list(range(1, len(records), 3))
    out = gather_shards(shards[::-1], tmp_path / "gathered.parquet")
    assert pq.read_table(out).column_names == pq.read_table(whole).column_names
    assert pq.read_table(out).column("id").to_pylist() == pq.read_table(whole).column("id").to_pylist()
    for pooling in ("mean", "cls"):
        np.testing.assert_allclose(vectors(out, pooling), vectors(whole, pooling), atol=1e-5)
    meta = read_protkit_metadata(out)
    assert (meta["n_rows"], meta["shards"], "shard" in meta) == (len(records), 3, False)
    with pytest.raises(EmbedError, match=r"expected shards 0\.\.2 of 3 once each, got \[0, 2\]"):
        gather_shards([shards[0], shards[2]], tmp_path / "bad.parquet")
    assert not (tmp_path / "bad.parquet").exists()


def crash_after(model: torch.nn.Module, calls: int):
    """A forward hook that raises on the ``calls``-th forward (a preempted node)."""
    seen = []

    def hook(mod, args, out):
        seen.append(1)
        if len(seen) == calls:
            raise RuntimeError("simulated crash (node preempted)")

    return model.register_forward_hook(hook)


def test_interrupted_run_leaves_no_output_and_resumes_to_the_same_file(fp32, fasta, records, tmp_path):
    out = tmp_path / "out" / "e.parquet"
    options = dict(poolings=("mean", "cls"), max_tokens=600, chunk_residues=1500)
    whole = embed_fasta(fp32, fasta, tmp_path / "whole.parquet", **options)
    hook = crash_after(fp32.model, 9)
    try:
        with pytest.raises(RuntimeError, match="simulated crash"):
            embed_fasta(fp32, fasta, out, **options)
    finally:
        hook.remove()
    assert not out.exists() and not list(out.parent.glob(".*.tmp"))
    parts = sorted(p.name for p in work_dir(out).glob("part-*.parquet"))
    assert 1 <= len(parts) < 4  # some parts finished before the crash, not all

    rows_seen: list[int] = []
    hook = fp32.model.register_forward_hook(lambda mod, args, o: rows_seen.append(args[0].shape[0]))
    try:
        embed_fasta(fp32, fasta, out, **options)  # same arguments: resumes
    finally:
        hook.remove()
    assert 0 < sum(rows_seen) < len(records) - 3  # only the unfinished parts were embedded
    assert not work_dir(out).exists()
    assert pq.read_table(out).equals(pq.read_table(whole))
    assert read_protkit_metadata(out) == read_protkit_metadata(whole)


def test_resume_refuses_other_arguments(fp32, model_dir, fasta, tmp_path):
    out = tmp_path / "e.parquet"
    hook = crash_after(fp32.model, 2)
    try:
        with pytest.raises(RuntimeError):
            embed_fasta(fp32, fasta, out, max_tokens=600, chunk_residues=1500)
    finally:
        hook.remove()
    int8 = load_model(model_dir, int8=True)
    with pytest.raises(EmbedError, match=r"unfinished run with other arguments .* model_fingerprint: '[0-9a-f]+' -> "
                                         r"'[0-9a-f]+'.*quantization: None -> 'int8_dynamic'"):
        embed_fasta(int8, fasta, out, max_tokens=600, chunk_residues=1500)
    with pytest.raises(EmbedError, match=r"poolings: \['mean'\] -> \['cls'\]"):
        embed_fasta(fp32, fasta, out, poolings=("cls",), max_tokens=600, chunk_residues=1500)
    assert not out.exists()
    embed_fasta(int8, fasta, out, max_tokens=600, chunk_residues=1500, resume=False)  # start over
    assert read_protkit_metadata(out)["quantization"] == "int8_dynamic" and not work_dir(out).exists()


def test_int8_model(model_dir, fp32, fasta, tmp_path):
    int8 = load_model(model_dir, int8=True)
    assert int8.quantization == "int8_dynamic"
    assert int8.fingerprint == file_sha256(model_dir / "int8" / "model.pt")
    assert load_model(model_dir / "int8").quantization == "int8_dynamic"  # the artifact dir implies int8
    a = vectors(embed_fasta(fp32, fasta, tmp_path / "a.parquet"), "mean")
    out = embed_fasta(int8, fasta, tmp_path / "b.parquet")
    b = vectors(out, "mean")
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.min() > 0.99 and not np.array_equal(a, b)
    assert read_protkit_metadata(out)["int8"] is True


def test_int8_without_artifact_quantizes_on_the_fly(tmp_path, fasta):
    torch.manual_seed(3)
    ProtHash(TINY).save_pretrained(tmp_path / "m")
    loaded = load_model(tmp_path / "m", int8=True)
    assert loaded.quantization == "int8_dynamic"
    assert loaded.fingerprint == file_sha256(tmp_path / "m" / "model.safetensors")


def test_load_model_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file or directory"):
        load_model(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelFormatError, match=r"empty: not a model directory"):
        load_model(tmp_path / "empty")


def test_load_model_from_hub_cache(offline_hub, model_dir):
    offline_hub("someone/prothash-tiny", {
        "config.json": model_dir / "config.json",
        "model.safetensors": model_dir / "model.safetensors",
    })
    loaded = load_model("someone/prothash-tiny")
    assert loaded.source == "someone/prothash-tiny"
    assert loaded.fingerprint == file_sha256(model_dir / "model.safetensors")
    with pytest.raises(FileNotFoundError, match="Hugging Face Hub"):
        load_model("someone/not-there")


def per_token(model: ProtHash, sequence: str) -> np.ndarray:
    """Teacher-width vectors of each residue of one sequence embedded alone.  # (L, D)"""
    batch = encode_batch([sequence])
    with torch.no_grad():
        return model.adapter(model(batch.input_ids, batch.attention_mask))[0, 1:-1].numpy()


def test_max_pooling_and_per_residue_output(fp32, fasta, records, tmp_path):
    from protkit.embed.residues import read_residues
    from protkit.io.metadata import read_protkit_metadata

    out, res = tmp_path / "e.parquet", tmp_path / "r.parquet"
    embed_fasta(fp32, fasta, out, poolings=("mean", "max"), per_residue=res, max_tokens=1200, chunk_residues=2000)
    got = dict(read_residues(res))
    assert list(got) == [rid for rid, _ in records]
    assert pq.ParquetFile(res).num_row_groups >= 3  # written part by part, read a part at a time
    for row, (rid, seq) in enumerate(records):
        want = per_token(fp32.model, seq.upper().rstrip("*"))
        assert got[rid].shape == want.shape == (len(seq.rstrip("*")), TINY.teacher_dim)
        np.testing.assert_allclose(got[rid], want, atol=2e-5)
        np.testing.assert_allclose(vectors(out, "max")[row], want.max(0), atol=2e-5)
        np.testing.assert_allclose(vectors(out, "mean")[row], want.mean(0), atol=2e-5)
    assert read_protkit_metadata(res)["per_residue"] is True
    assert read_protkit_metadata(res)["model_fingerprint"] == read_protkit_metadata(out)["model_fingerprint"]
    only = dict(read_residues(res, ids=["p05"]))
    assert list(only) == ["p05"]

    half = tmp_path / "h.parquet"
    embed_fasta(fp32, fasta, tmp_path / "e2.parquet", per_residue=half, store_dtype="fp16")
    assert dict(read_residues(half, dtype=np.float16))["p05"].dtype == np.float16
    np.testing.assert_allclose(dict(read_residues(half))["p05"], got["p05"], rtol=2e-3, atol=2e-3)
    assert half.stat().st_size < res.stat().st_size


def test_alphabet_policy_and_nucleotide_files(fp32, tmp_path):
    rng = random.Random(4)
    recs = [("ok1", random_protein(rng, 50)), ("bad", "MKJJ12"), ("ok2", random_protein(rng, 40) + "*")]
    path = tmp_path / "mixed.fasta"
    write_fasta(recs, path)
    out = embed_fasta(fp32, path, tmp_path / "m.parquet")
    assert pq.read_table(out).column("id").to_pylist() == ["ok1", "ok2"]
    assert read_protkit_metadata(out)["rejected"] == [{"id": "bad", "line": 3, "reason": "invalid_character"}]
    with pytest.raises(EmbedError, match=r"mixed\.fasta line 3, id bad: letter 'J' at residue 3 is not an amino acid"):
        embed_fasta(fp32, path, tmp_path / "e.parquet", alphabet="error")
    assert not (tmp_path / "e.parquet").exists() and not work_dir(tmp_path / "e.parquet").exists()

    dna = tmp_path / "genes.fna"
    write_fasta([(f"g{i}", "".join(rng.choice("ACGT") for _ in range(120)) + "N") for i in range(3)], dna)
    with pytest.raises(EmbedError, match=r"genes\.fna: looks like DNA/RNA, not protein \(100% of the first 363"):
        embed_fasta(fp32, dna, tmp_path / "d.parquet")
    assert not (tmp_path / "d.parquet").exists()
    # a real protein rich in A/G/T is not refused
    write_fasta([("agt", "".join(rng.choice("AGTCN") for _ in range(60)) + random_protein(rng, 60))], dna)
    assert pq.read_table(embed_fasta(fp32, dna, tmp_path / "p.parquet")).num_rows == 1


def test_each_nucleotide_record_is_judged_on_its_own(fp32, tmp_path):
    """A short DNA file (97 letters in two records, below the file-level guard's 100) is not embedded
    as protein: each record of 20 or more letters, all A/C/G/T/U/N, falls under the alphabet policy."""
    rng = random.Random(5)
    dna = tmp_path / "short.fna"
    write_fasta([("g1", "".join(rng.choice("ACGT") for _ in range(50))),
                 ("g2", "".join(rng.choice("ACGTN") for _ in range(47)))], dna)
    with pytest.raises(EmbedError, match=r"short\.fna: no record left to embed \(2 rejected"):
        embed_fasta(fp32, dna, tmp_path / "d.parquet")
    with pytest.raises(EmbedError, match=r"short\.fna line 1, id g1: all 50 letters are A/C/G/T/U/N: a DNA/RNA"):
        embed_fasta(fp32, dna, tmp_path / "d.parquet", alphabet="error")
    mixed = tmp_path / "mixed.fasta"
    write_fasta([("g1", "ACGT" * 10), ("p1", random_protein(rng, 40)), ("short", "ACGTACGT")], mixed)
    out = embed_fasta(fp32, mixed, tmp_path / "m.parquet")
    assert pq.read_table(out).column("id").to_pylist() == ["p1", "short"]  # 8 letters: too short to tell
    assert read_protkit_metadata(out)["rejected"] == [{"id": "g1", "line": 1, "reason": "nucleotide"}]


# --- std, var, median, norm and --concatenate ------------------------------------------------------
ALL_POOLINGS = ["mean", "std", "median", "norm", "var", "max", "cls"]


def pool_residues(residues: np.ndarray, pooling: str) -> np.ndarray:
    """One protein's pooled vector from its per-residue vectors ``(n, D)``, in float64 numpy.  # (D,)"""
    x = residues.astype(np.float64)
    statistics = {"mean": lambda: x.mean(0), "max": lambda: x.max(0), "std": lambda: x.std(0), "var": lambda: x.var(0),
                  "median": lambda: np.sort(x, axis=0)[(len(x) - 1) // 2], "norm": lambda: np.linalg.norm(x, axis=0)}
    return statistics[pooling]()


@pytest.fixture(scope="module")
def all_poolings(model_dir, fasta, tmp_path_factory) -> tuple[Path, Path]:
    """``protkit embed --pooling mean,std,median,norm,var,max,cls --per-residue`` (backend auto)."""
    from protkit.cli.main import main

    out_dir = tmp_path_factory.mktemp("poolings")
    out, res = out_dir / "e.parquet", out_dir / "r.parquet"
    assert main(["-q", "embed", "--model", str(model_dir), "--input", str(fasta), "--output", str(out),
                 "--pooling", ",".join(ALL_POOLINGS), "--per-residue", str(res), "--device", "cpu",
                 "--max-tokens", "1200"]) == 0
    return out, res


def test_cli_writes_every_pooling_equal_to_pooling_the_residue_vectors(fp32, all_poolings, records):
    from protkit.embed.residues import read_residues

    out, res = all_poolings
    assert pq.read_table(out).column_names == ["id", "length", "truncated", *ALL_POOLINGS]
    meta = read_protkit_metadata(out)
    assert (meta["poolings"], meta["backend"], meta["dim"], meta["concatenate"]) == (ALL_POOLINGS, "torch", 64, False)
    residues = dict(read_residues(res))
    columns = {p: vectors(out, p) for p in ALL_POOLINGS}
    for row, (rid, seq) in enumerate(records):
        for pooling in ALL_POOLINGS[:-1]:
            want = pool_residues(residues[rid], pooling)
            np.testing.assert_allclose(columns[pooling][row], want, rtol=1e-4, atol=2e-5, err_msg=f"{rid} {pooling}")
        np.testing.assert_allclose(columns["cls"][row], alone(fp32.model, seq.upper().rstrip("*"), "cls"), atol=1e-5)
    assert {len(s.rstrip("*")) % 2 for _, s in records} == {0, 1}  # medians of odd and even residue counts
    assert (columns["var"] >= 0).all() and np.allclose(columns["std"] ** 2, columns["var"], rtol=1e-4, atol=1e-7)
    assert not np.allclose(columns["median"], columns["mean"], atol=1e-3)


def test_concatenate_writes_one_column_of_the_poolings_side_by_side(fp32, model_dir, fasta, records, tmp_path):
    from protkit.cli.main import main
    from protkit.search.vectors import normalise, read_embeddings

    out = tmp_path / "c.parquet"
    args = ["-q", "embed", "--model", str(model_dir), "--input", str(fasta), "--device", "cpu", "--max-tokens", "900"]
    assert main([*args, "--output", str(out), "--pooling", "median,mean,norm", "--concatenate"]) == 0
    assert main([*args, "--output", str(tmp_path / "s.parquet"), "--pooling", "median,mean,norm"]) == 0
    assert pq.read_table(out).column_names == ["id", "length", "truncated", "median+mean+norm"]
    joined = vectors(out, "median+mean+norm")
    separate = np.concatenate([vectors(tmp_path / "s.parquet", p) for p in ("median", "mean", "norm")], axis=1)
    assert joined.shape == (len(records), 3 * TINY.teacher_dim)
    np.testing.assert_array_equal(joined, separate)
    meta = read_protkit_metadata(out)
    assert (meta["poolings"], meta["dim"], meta["concatenate"]) == (["median+mean+norm"], 192, True)

    read = read_embeddings(out, "median+mean+norm")  # search, index, dedup, cluster and hash read it as it is
    assert read.ids == [rid for rid, _ in records] and not read.skipped
    np.testing.assert_allclose(read.vectors, normalise(separate), atol=1e-6)
    index = tmp_path / "index"
    assert main(["-q", "index", "--embeddings", str(out), "--pooling", "median+mean+norm", "--output", str(index)]) == 0
    hits = tmp_path / "hits.parquet"  # FASTA queries are embedded with the index's concatenated pooling
    assert main(["-q", "search", "--index", str(index), "--query", str(fasta), "--output", str(hits), "--k", "1",
                 "--keep-self"]) == 0
    top = pq.read_table(hits).to_pandas()
    assert (top["score"] > 0.9999).all()
    assert set(top["query_id"]) == {rid for rid, _ in records}


def test_concatenate_is_part_of_the_run_identity(fp32, fasta, tmp_path):
    out = tmp_path / "e.parquet"
    options = dict(poolings=("mean", "std"), max_tokens=600, chunk_residues=1500)
    hook = crash_after(fp32.model, 2)
    try:
        with pytest.raises(RuntimeError):
            embed_fasta(fp32, fasta, out, **options)
    finally:
        hook.remove()
    with pytest.raises(EmbedError, match=r"concatenate: False -> True"):
        embed_fasta(fp32, fasta, out, concatenate=True, **options)
    with pytest.raises(EmbedError, match=r"pooling names a pooling twice: mean, mean"):
        embed_fasta(fp32, fasta, tmp_path / "twice.parquet", poolings=("mean", "mean"))


def test_auto_backend_runs_the_residue_statistics_in_torch(model_dir):
    from protkit.embed.loading import choose_path

    cpu = torch.device("cpu")
    for precision in ("fp32", "auto"):
        for pooling in ("std", "var", "median", "norm"):
            assert choose_path("auto", precision, cpu, False, False, True, ["mean", pooling]) == ("torch", "fp32")
    assert load_embedder(model_dir, device="cpu", poolings=["cls", "median"]).backend == "torch"
    assert load_embedder(model_dir, device="cpu", poolings=["mean+std"]).backend == "torch"
    assert choose_path("torch", "fp32", cpu, False, False, True, ["mean"]) == ("torch", "fp32")


def test_onnxruntime_backend_refuses_the_residue_statistics(model_dir, fasta, tmp_path, capsys):
    from protkit.cli.main import main

    pytest.importorskip("onnxruntime")
    out = tmp_path / "o.parquet"
    assert main(["embed", "--model", str(model_dir), "--input", str(fasta), "--output", str(out), "--device", "cpu",
                 "--backend", "onnxruntime", "--pooling", "mean,std,norm"]) == 2
    err = capsys.readouterr().err
    assert err.count("protkit: error:") == 1 and err.startswith("protkit: error: ") and "Traceback" not in err
    assert "gives cls, mean, max poolings, not std, norm; use --backend torch" in err
    assert not out.exists()
    with pytest.raises(EmbedError, match=r"not median; use --backend torch"):
        load_embedder(model_dir, device="cpu", backend="onnxruntime", poolings=["median+mean"])


# --- no silent loss: truncation warning, header descriptions -----------------------------------
def truncation_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "truncated" in r.getMessage()]


def test_truncating_more_than_one_percent_is_one_warning(fp32, tmp_path, caplog):
    rng = random.Random(6)
    recs = [(f"s{i:03d}", random_protein(rng, 30)) for i in range(197)]
    recs += [(f"long{i}", random_protein(rng, 60)) for i in range(3)]
    path = tmp_path / "mixed.fasta"
    write_fasta(recs, path)
    with caplog.at_level(logging.WARNING):
        out = embed_fasta(fp32, path, tmp_path / "t.parquet", max_length=42)
    assert truncation_warnings(caplog) == [
        f"{path}: 3 of 200 proteins (1.5%) are longer than the 40 residues the model reads (max_length 42 tokens) and "
        "are truncated to their first 40; pass --overlength drop to leave them out or --overlength error to stop at "
        "them, or use a model with a longer context"
    ]
    assert read_protkit_metadata(out)["n_truncated"] == 3  # the counts stay in the metadata
    caplog.clear()
    write_fasta(recs[:-1], path)  # 2 of 199: still over 1%
    with caplog.at_level(logging.WARNING):
        embed_fasta(fp32, path, tmp_path / "u.parquet", max_length=42)
    assert len(truncation_warnings(caplog)) == 1
    caplog.clear()
    write_fasta(recs[:-2], path)  # 1 of 198: not more than 1%, one line in the summary only
    with caplog.at_level(logging.WARNING):
        out = embed_fasta(fp32, path, tmp_path / "v.parquet", max_length=42)
    assert truncation_warnings(caplog) == [] and read_protkit_metadata(out)["n_truncated"] == 1


def test_header_descriptions_become_a_column_through_shards(fp32, tmp_path):
    """The header's text after the id, null for a bare header; a shard whose headers are all bare
    gathers with the others; a file of bare headers has no description column
    (test_rows_in_fasta_order_equal_one_at_a_time)."""
    rng = random.Random(8)
    lines = [">a1 kinase domain  [Homo sapiens]", ">a2", ">a3 OS=Mus musculus GN=Abc1", ">a4", ">a5\tseven  spaced"]
    path = tmp_path / "described.fasta"
    path.write_text("".join(f"{header}\n{random_protein(rng, 25)}\n" for header in lines))
    want = ["kinase domain  [Homo sapiens]", None, "OS=Mus musculus GN=Abc1", None, "seven  spaced"]
    whole = pq.read_table(embed_fasta(fp32, path, tmp_path / "whole.parquet"))
    assert whole.column_names == ["id", "description", "length", "truncated", "mean"]
    assert whole.column("description").to_pylist() == want
    shards = [embed_shard(fp32, path, tmp_path / "shards", i, 2) for i in range(2)]
    assert "description" not in pq.read_table(shards[1]).column_names  # a2, a4: bare headers only
    gathered = pq.read_table(gather_shards(shards, tmp_path / "gathered.parquet"))
    assert gathered.column_names == whole.column_names
    assert gathered.column("description").to_pylist() == want
