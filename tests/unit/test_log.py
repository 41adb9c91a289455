"""kappa.log: which records reach the terminal, as the jobs and commands run them."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _run(script: str, tmp_path: Path) -> str:
    path = tmp_path / "job.py"
    path.write_text(textwrap.dedent(script))
    done = subprocess.run(
        [sys.executable, str(path)],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(PROJECT_ROOT), "PATH": "/usr/bin:/bin"},
    )
    return done.stderr


def test_a_job_run_as_a_script_logs_its_json_lines(tmp_path: Path) -> None:
    """spark-submit runs a job's file, so its module logger is ``__main__``: its records
    (the features job's re-plan event) must reach the driver log."""
    err = _run(
        """
        import logging
        from kappa.log import configure
        configure(json_lines=True)
        logging.getLogger(__name__).info("replan", extra={"new_writer_schema_ids": [12]})
        logging.getLogger("py4j.clientserver").info("chatter")
        """,
        tmp_path,
    )
    assert '"new_writer_schema_ids": [12]' in err
    assert '"message": "replan"' in err
    assert "chatter" not in err


@pytest.mark.parametrize("level", ["INFO", "WARNING"])
def test_terminal_level_applies_to_kappa_records(tmp_path: Path, level: str) -> None:
    err = _run(
        f"""
        import logging
        from kappa.log import configure
        configure("{level}")
        logging.getLogger("kappa.x").info("an info line")
        logging.getLogger("kappa.x").warning("a warning line")
        """,
        tmp_path,
    )
    assert "a warning line" in err
    assert ("an info line" in err) == (level == "INFO")


def test_a_torn_progress_line_is_skipped_and_said(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A crash or a full disk can leave half a line at the end of progress.jsonl: the
    status and report readers use the whole records and say what they skipped."""
    from kappa.settings import get_settings
    from stream_jobs import launcher, progress

    monkeypatch.setenv("KAPPA_STATE_DIR", str(tmp_path))
    get_settings.cache_clear()
    settings = get_settings()
    folder = launcher.job_dir(settings, "q")
    folder.mkdir(parents=True)
    whole = '{"batchId": 0, "numInputRows": 5}\n{"batchId": 1, "numInputRows": 7}\n'
    (folder / "progress.jsonl").write_text(whole + '{"batchId": 2, "numIn')
    try:
        with caplog.at_level("WARNING"):
            assert [p["batchId"] for p in progress.all_progress(settings, "q")] == [0, 1]
            assert progress.last_progress(settings, "q") == {"batchId": 1, "numInputRows": 7}
    finally:
        get_settings.cache_clear()
    assert "skipped 1 unreadable line(s)" in caplog.text


def test_the_progress_log_rotates_and_the_totals_outlive_it(tmp_path: Path) -> None:
    """A query that runs for months keeps a bounded log: rotated files, the newest record
    read from the end, and its rows dropped by watermark counted once over its whole life
    (a restarted driver resumes the count after the batches it has seen)."""
    from stream_jobs import progress

    path = tmp_path / "streams" / "q" / "progress.jsonl"

    def record(batch: int, run: str = "r1") -> dict[str, Any]:
        dropped = {"operatorName": "dedupeWithinWatermark", "numRowsDroppedByWatermark": 2}
        pad = "x" * 900  # ~1 KiB a record, like Spark's
        ran = {"addBatch": 5, "triggerExecution": 7}
        return {
            "runId": run,
            "batchId": batch,
            "durationMs": ran,
            "stateOperators": [dropped],
            "pad": pad,
        }

    writer = progress.ProgressWriter(path, max_bytes=20_000)
    for batch in range(200):
        writer.write([record(batch)])
    writer.close()
    files = sorted(p.name for p in path.parent.glob("progress.jsonl*"))
    assert files == ["progress.jsonl", *[f"progress.jsonl.{i}" for i in (1, 2, 3)]]
    assert all(p.stat().st_size <= 21_000 for p in path.parent.glob("progress.jsonl*"))
    # A restarted driver re-reports its last batch: counted once; a new run counts on.
    again = progress.ProgressWriter(path, max_bytes=20_000)
    again.write([record(199), record(0, run="r2")])
    again.close()

    settings = _settings_at(tmp_path)
    assert progress.last_progress(settings, "q")["runId"] == "r2"
    kept = progress.all_progress(settings, "q")
    assert [r["batchId"] for r in kept[-3:]] == [199, 199, 0]
    assert len(kept) < 100  # bounded: the oldest records rotated away
    assert progress.dropped_by_watermark(settings, "q") == 2 * 201


def test_the_newest_progress_record_is_found_across_chunks(tmp_path: Path) -> None:
    """Records longer than the tail read, a torn last line, and a just-rotated empty file."""
    from stream_jobs import progress

    folder = tmp_path / "streams" / "q"
    folder.mkdir(parents=True)
    big = {"batchId": 7, "pad": "y" * (3 * progress.TAIL_BYTES)}
    (folder / "progress.jsonl.1").write_text(json.dumps(big) + "\n")
    (folder / "progress.jsonl").write_text("")
    settings = _settings_at(tmp_path)
    assert progress.last_progress(settings, "q") == big
    (folder / "progress.jsonl").write_text(json.dumps({"batchId": 8}) + "\n" + '{"batch')
    assert progress.last_progress(settings, "q") == {"batchId": 8}


def _settings_at(state_dir: Path) -> Any:
    from kappa.settings import Settings

    settings = Settings()
    stack = settings.stack.model_copy(update={"state_dir": state_dir})
    return settings.model_copy(update={"stack": stack})


def test_an_idle_report_and_the_batch_that_follows_it_are_both_kept(tmp_path: Path) -> None:
    """An idle query reports the id of its next batch before that batch runs: the report
    is ordered before the batch, drops nothing, and does not hide the batch's count."""
    from stream_jobs import progress

    idle = {"runId": "r", "batchId": 9, "durationMs": {"latestOffset": 1}, "stateOperators": []}
    late = {"operatorName": "dedupeWithinWatermark", "numRowsDroppedByWatermark": 3}
    ran = {"runId": "r", "batchId": 9, "durationMs": {"addBatch": 4}, "stateOperators": [late]}
    before = {**ran, "batchId": 8}
    assert progress.batch_key(before) < progress.batch_key(idle) < progress.batch_key(ran)
    assert progress.follows(progress.batch_key(before), progress.batch_key(idle))
    assert progress.follows(progress.batch_key(idle), progress.batch_key(ran))
    assert not progress.follows(progress.batch_key(before), (10, True))  # batch 9 was missed
    assert not progress.follows(progress.batch_key(idle), (10, True))
    path = tmp_path / "streams" / "q" / "progress.jsonl"
    writer = progress.ProgressWriter(path)
    writer.write([before, idle, ran])
    writer.close()
    assert progress.dropped_by_watermark(_settings_at(tmp_path), "q") == 3 + 3
