#!/usr/bin/env bash
# Run by Snakemake once, right after it creates the environment of protkit.yaml
# (snakemake --software-deployment-method conda): the two installs a conda pip section cannot express.
#  - esm (EvolutionaryScale's reference ESMC and tokenizer) without its declared dependencies
#    (torchvision, torchtext: never imported, and they would pull other torch builds);
#  - protkit itself, from the repository that holds the Snakefile (the Snakefile sets PROTKIT_SOURCE).
set -euo pipefail
source_dir="${PROTKIT_SOURCE:?PROTKIT_SOURCE is unset: run this through the workflow (its Snakefile sets it)}"
python -m pip install --no-deps -r "${source_dir}/requirements/esm.txt"
python -m pip install --no-deps "${source_dir}"
