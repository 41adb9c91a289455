"""kappa stage: connect (see README, Architecture)."""
