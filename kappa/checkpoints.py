"""Spark streaming checkpoints read as files: the one place that knows their layout.

A query's checkpoint folder holds ``metadata`` (first line: JSON with the query's
``id``, stable across restarts) and ``offsets/<batch id>`` (a version line, the
batch's metadata line, then one JSON line per source with the offsets the batch
ends at). Only local (``file://`` or plain path) checkpoints can be read here.
"""

from __future__ import annotations

import json
from pathlib import Path


def _path(location: str | Path) -> Path:
    return Path(str(location).removeprefix("file://"))


def query_id(location: str | Path) -> str:
    """The id of the query whose checkpoint is at ``location``.

    Raises:
        OSError, ValueError, KeyError, IndexError: No readable ``metadata`` there.
    """
    return str(json.loads((_path(location) / "metadata").read_text().splitlines()[0])["id"])


def batch_offsets(location: str | Path, batch_id: int | str) -> list[str]:
    """The end offsets of batch ``batch_id``: one JSON text per source.

    Raises:
        OSError: The batch has no offsets file (never planned, or purged).
    """
    lines = (_path(location) / "offsets" / str(batch_id)).read_text().splitlines()
    return lines[2:]


def find(root: str | Path, wanted: str) -> Path | None:
    """The checkpoint folder directly under ``root`` of the query with id ``wanted``."""
    folder = _path(root)
    if not folder.is_dir():
        return None
    for metadata in sorted(folder.glob("*/metadata")):
        try:
            if query_id(metadata.parent) == wanted:
                return metadata.parent
        except (OSError, ValueError, KeyError, IndexError):
            continue
    return None
