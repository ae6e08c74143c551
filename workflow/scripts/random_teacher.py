"""Rule random_teacher: an ESMC-architecture teacher with seeded random weights (demo/tests)."""
from protkit.logs import to_file
from protkit.models.esmc import ESMCConfig
from protkit.models.esmc_weights import random_esmc, save_weights

to_file(snakemake.log[0])
spec = dict(snakemake.params.random)
seed = spec.pop("seed")
save_weights(random_esmc(ESMCConfig(**spec), seed=seed), snakemake.output[0])
