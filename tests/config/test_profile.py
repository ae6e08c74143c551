"""The SLURM profile's placeholder account is named at plan time (``snakemake --profile slurm -n``),
not found when sbatch refuses the first job."""

from __future__ import annotations

from pathlib import Path

from pipeline_fixtures import REPO, snakemake, tiny_config, write_config
from protkit.config.profile import placeholder_warnings, profile_in_use


def test_the_profile_is_found_from_the_command_line_or_the_environment(tmp_path: Path) -> None:
    (tmp_path / "prof").mkdir()
    (tmp_path / "prof" / "config.yaml").write_text("default-resources:\n  slurm_account: lab42\n")
    assert profile_in_use(["snakemake", "--profile", "prof", "-n"], {}, [Path("/nowhere"), tmp_path]) == \
        tmp_path / "prof"
    assert profile_in_use(["snakemake", f"--profile={tmp_path / 'prof'}"], {}, []) == tmp_path / "prof"
    assert profile_in_use(["snakemake"], {"SNAKEMAKE_PROFILE": str(tmp_path / "prof")}, []) == tmp_path / "prof"
    assert profile_in_use(["snakemake", "-n"], {}, [tmp_path]) is None
    assert placeholder_warnings(tmp_path / "prof") == [] and placeholder_warnings(None) == []


def test_the_shipped_placeholder_account_is_named() -> None:
    lines = placeholder_warnings(REPO / "slurm")
    assert len(lines) == 1 and "slurm_account is still the placeholder 'my_account'" in lines[0]


def test_a_dry_run_with_the_shipped_profile_warns_once(tmp_path: Path) -> None:
    result = snakemake(tmp_path, write_config(tmp_path, tiny_config()), "-n", "--profile", str(REPO / "slurm"))
    output = result.stdout + result.stderr
    assert output.count("slurm_account is still the placeholder 'my_account'") == 1, output[-2000:]
