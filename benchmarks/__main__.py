"""``python -m benchmarks [NAME ...]``: run every benchmark (or the named ones)."""

from __future__ import annotations

import importlib
import json
import pkgutil
import sys
from pathlib import Path


def discover() -> list[str]:
    here = Path(__file__).parent
    return sorted(m.name for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_"))


def main(argv: list[str]) -> int:
    names = argv or discover()
    if not names:
        print("no benchmarks yet")
        return 0
    results = {}
    for name in names:
        print(f"== {name}", flush=True)
        module = importlib.import_module(f"benchmarks.{name.removesuffix('.py')}")
        results[name] = module.main()
    print(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
