"""The prepared GPU run: ``benchmarks/gpu/run.sh`` (one command on the device), ``carry.py`` (the wheels and data
it takes along), ``merge.py`` (its figures into docs/). ``DOC_SECTION`` is docs/benchmarks.md's account of it."""

DOC_SECTION = """\
**The GPU run.** B12 and the GPU sections of B5 and B11 come from one prepared command on a GPU machine
(Python 3.12, torch 2.11 with CUDA 13, no package registry): `python benchmarks/gpu/carry.py` here puts the
wheels the machine lacks (torchao, snakemake, faiss-cpu, matplotlib, pyhmmer, peft and what they need;
`benchmarks/gpu/carried.txt`, versions from requirements/lock.txt) and the DeepLoc proteins into `.gpu/`
(git-ignored, 61 MiB of the device tool's 64); then the device tool runs
`benchmarks/gpu/run.sh` with `carry=[".gpu"]`, and `python -m benchmarks.gpu.merge OUT` puts its figures into
this page and docs/scaling.md. In at most 8 minutes, each part time-boxed and written as it goes, it runs:
the CUDA-marked tests (tests/gpu: esmc_300m bf16/fp16 vs fp32 on 256 DeepLoc proteins in padded batches, with
FastPLMs' limits beside ours; the student on the GPU vs the CPU; int8 on the GPU; a short bf16-autocast
distillation against the fp32 CPU run; `protkit embed --device cuda` vs the CPU); B12 (teacher fp32/bf16 at
ESM++'s 8 x 512 and on the DeepLoc mix in esm's batching and protkit's, with padding shares; the student in
fp32/bf16/int8, batched and one at a time); B5 (distillation steps/s) and B11 (precision errors) on the GPU;
and the demo pipeline with `device: cuda`, timed. Goals: teacher bf16 at 8 x 512 >= 198k residues/s on an
H100 (ESM++'s figure); >= 1.5x esm's batching on the DeepLoc mix; student >= 100x the teacher; batched >= 10x
one at a time; bf16 pooled cosine >= 0.999 and 1st-percentile residue cosine >= 0.99. `run.sh --dry-run`
runs every part on the CPU at tiny sizes (in `make test`); on a CPU without `--quick`, B12 is skipped."""
