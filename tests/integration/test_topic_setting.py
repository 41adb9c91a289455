"""``KAPPA_TOPICS_CLICKS`` moves the whole click pipeline, not only the producer.

Every process below is started with the setting pointed at a fresh topic and is
given no ``--topic``: the producer writes it, ``raw_clicks`` archives it, the
feature job reads it, and the trainer's schema ids and the status offsets follow.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from pyiceberg.expressions import EqualTo

from iceberg.tables import RAW_CLICKS
from kappa import names, registry, topics
from kappa.catalog import load_catalog
from kappa.settings import Settings, TopicSettings
from stream_jobs import features, launcher, progress

KAPPA = str(Path(sys.executable).parent / "kappa")
EVENTS = 300


def _run(*argvs: list[str], env: dict[str, str], logs: Path, timeout_s: float = 240) -> None:
    """Run the commands side by side (each its own process, stderr to a file in ``logs``);
    all must succeed."""
    procs = []
    for i, argv in enumerate(argvs):
        with (logs / f"{argv[-1]}-{i}.log").open("wb") as err:
            procs.append((argv, err.name, subprocess.Popen(argv, env=env, stderr=err)))
    for argv, log, proc in procs:
        code = proc.wait(timeout=timeout_s)
        assert code == 0, f"{argv} exited {code}:\n{Path(log).read_text()[-3000:]}"


def test_the_click_topic_setting_moves_producer_jobs_trainer_and_status(
    lake: Settings, unique_name: Any, namespaces: Any, tmp_path: Path
) -> None:
    topic, ns = unique_name("clicks"), namespaces()
    # One shuffle partition: a few hundred events need no more, and the jobs start faster.
    env = {**os.environ, "KAPPA_TOPICS_CLICKS": topic, "KAPPA_SPARK_SHUFFLE_PARTITIONS": "1"}
    moved = lake.model_copy(update={"topics": TopicSettings(clicks=topic)})

    _run(
        [KAPPA, "produce", "--count", str(EVENTS), "--no-db", "--seed", "5"], env=env, logs=tmp_path
    )
    assert topics.records(lake, topic) == EVENTS
    assert len(topics.end_offsets(lake, topic)) == moved.topics.clicks_partitions

    # Neither job is told the topic: both take it from the setting.
    raw_query, instance = unique_name("raw"), unique_name("feat")
    _run(
        [sys.executable, "-m", "stream_jobs.raw_clicks", "--available-now", "--name", raw_query],
        [
            *[sys.executable, "-m", "stream_jobs.features", "--available-now", "--name", instance],
            *["--only", "user_activity_1m", "--namespace", ns],
        ],
        env=env,
        logs=tmp_path,
    )
    archived = (
        load_catalog(lake)
        .load_table(RAW_CLICKS.ident)
        .scan(row_filter=EqualTo("kafka_topic", topic), selected_fields=("kafka_offset",))
        .to_arrow()
    )
    assert archived.num_rows == EVENTS  # one row per record of the topic
    last = progress.last_progress(lake, features.query_name(instance, "user_activity_1m"))
    read = progress.processed_offsets(last)
    assert set(read) == {topic} and sum(read[topic].values()) == EVENTS
    behind = launcher.offsets_behind(lake, last)  # what `kappa status` shows
    assert behind and all(k.startswith(f"{topic}:") for k in behind)
    assert set(behind.values()) == {0}

    from training import trainer

    registered = registry.subject_ids(lake.registry.ccompat_url, names.value_subject(topic))
    assert registered and trainer.schema_ids(moved) == registered
    specs = launcher.jobs(moved)
    assert specs["raw_clicks"].topics == specs["features"].topics == (topic,)
