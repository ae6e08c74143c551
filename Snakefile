# protkit: ESMC -> ProtHash distillation, int8 quantization, evaluation, embedding, search and fine-tuning.
#   snakemake -n                                   plan the real run (config/config.yaml)
#   snakemake --cores 2 --configfile config/demo.yaml   the offline demo (or: make demo)
#   snakemake --profile slurm                      the real run on a SLURM cluster
from snakemake.utils import min_version

min_version("9.20")


# The real run by default; `--configfile X` replaces it (it is not merged with the default).
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


# `snakemake --sdm apptainer` runs every job in this image (build it: containers/protkit.def); without
# --sdm apptainer the line is unused. GPUs: add --apptainer-args "--nv".
container: "containers/protkit.sif"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/teacher.smk"
include: "workflow/rules/distill.smk"
include: "workflow/rules/quantize.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/embed.smk"
include: "workflow/rules/search.smk"
include: "workflow/rules/finetune.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        all_targets(),


rule data:
    input:
        SEQUENCES,


rule teacher_caches:
    input:
        [cache_manifest(t) for t in used_teachers()],


rule models:
    input:
        expand(MODEL_WEIGHTS, variant=VARIANTS),
        expand(INT8_MARKER, variant=VARIANTS),


rule evaluation:
    input:
        EVAL_SUMMARY,


rule embeddings:
    input:
        embedding_targets(),


rule search:
    input:
        search_targets(),


rule fine_tuning:
    input:
        finetune_targets(),
