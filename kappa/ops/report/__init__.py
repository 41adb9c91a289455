"""The kappa report: one self-contained HTML page about the running platform.

:func:`gather` reads what the system already records (the services' health, each
streaming query's ``progress.jsonl``, Iceberg snapshot metadata, MLflow's runs) into
one dict; :func:`render` turns that dict into the page, purely; :func:`write` saves it.
The page reads top to bottom like the data flow:

- **services**: is each component of the stack up, where, and which version;
- **throughput**: per streaming query, input and processed rows/s per micro-batch, and
  how long each batch took;
- **freshness**: per Iceberg table, seconds from the newest event produced to the
  commit that made it queryable, with p50/p99;
- **lag**: per query, Kafka offsets behind the end of the topic;
- **tables**: rows and current snapshot of every table, and rows over its snapshots;
- **quarantine**: records the data contracts set aside, by table and reason;
- **models**: MLflow training runs, their metrics, model versions and the champion;
- **drift**: the population stability index of each model input at every drift check
  of the control plane, against the threshold;
- **lineage**: topics → jobs → tables → models as a graph.

Charts are inline SVG drawn by :func:`line_chart` with the standard library, and the
page loads nothing, so it can be archived or attached to a ticket as is.
"""

from __future__ import annotations

from kappa.ops.report.charts import line_chart, lineage_svg, nice_ticks
from kappa.ops.report.gather import gather
from kappa.ops.report.render import Report, render, write

__all__ = ["Report", "gather", "line_chart", "lineage_svg", "nice_ticks", "render", "write"]
