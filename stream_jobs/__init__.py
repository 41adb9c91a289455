"""kappa stage: stream_jobs (see README, Architecture)."""
