"""protkit benchmark suite (``make bench`` runs ``benchmarks/run_all.py``); see docs/benchmarks.md."""
