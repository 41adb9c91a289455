"""The operations layer: what an operator, a scheduler (Airflow) or a notebook calls.

Each module is one piece of work over the stages (``infra``, ``connect``,
``stream_jobs``, ``iceberg``, ``training``, ``producers``): :mod:`kappa.ops.status`
(the operator's view now), :mod:`kappa.ops.report` (the same sources over time, as an
HTML page), :mod:`kappa.ops.demo` (the whole loop once) and :mod:`kappa.ops.checks`
(is a service reachable, before a command waits on it). They take a
:class:`~kappa.settings.Settings`, return plain data and report progress through a
callback or :mod:`logging`, never by printing; the CLI (:mod:`kappa.cli`) is a thin
layer of click commands over them. Nothing here imports :mod:`kappa.cli`, and the
stages' heavy dependencies (pyspark, mlflow, pyiceberg, pandas) are imported inside
functions, so importing an ops module stays cheap.
"""
