"""kappa: a streaming-first (Kappa architecture) ML data platform.

The core package holds what every stage shares: settings, exceptions and the
clients of shared services. It imports nothing heavy at import time, so
``kappa --help`` is instant.
"""

__version__ = "0.1.0"
