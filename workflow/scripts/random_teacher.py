"""Rule random_teacher: an ESMC-architecture teacher with seeded random weights (demo/tests)."""
from protkit.cache import write_random_teacher
from protkit.logs import start_job

start_job(snakemake.log[0], snakemake.threads)
write_random_teacher(snakemake.params.random, snakemake.output[0])
