"""Reproducible performance runs. Each ``bench_*.py`` module has ``main() -> dict``
that measures kappa next to a reference tool in the same run and prints ratios."""
