"""kappa stage: training (see README, Architecture)."""
