"""kappa stage: iceberg (see README, Architecture)."""
