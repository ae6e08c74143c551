"""Rule random_teacher: an ESMC-architecture teacher with seeded random weights (demo/tests)."""
from protkit.cache import write_random_teacher
from protkit.logs import to_file

to_file(snakemake.log[0])
write_random_teacher(snakemake.params.random, snakemake.output[0])
