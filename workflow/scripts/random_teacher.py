"""Rule random_teacher: an ESMC-architecture teacher with seeded random weights (demo/tests)."""
from protkit.io.logs import start_job
from protkit.teacher import write_random_teacher

start_job(snakemake.log[0], snakemake.threads)
write_random_teacher(snakemake.params.random, snakemake.output[0])
