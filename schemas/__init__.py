"""kappa stage: schemas (see README, Architecture)."""
