"""Spark streaming checkpoints read as files: the one place that knows their layout.

A query's checkpoint folder holds ``metadata`` (first line: JSON with the query's
``id``, stable across restarts) and ``offsets/<batch id>`` (a version line, the
batch's metadata line, then one JSON line per source with the offsets the batch
ends at). The folder may be local (a path or ``file://``) or on the object store
(``s3://``): it is read through a PyArrow filesystem (``kappa.objectstore``).
"""

from __future__ import annotations

import json

from kappa import objectstore
from kappa.settings import Settings


def _read(settings: Settings, location: str) -> str:
    fs, path = objectstore.filesystem(settings, location)
    with fs.open_input_stream(path) as stream:
        return bytes(stream.read()).decode("utf-8")


def query_id(settings: Settings, location: str) -> str:
    """The id of the query whose checkpoint is at ``location``.

    Raises:
        OSError, ValueError, KeyError, IndexError: No readable ``metadata`` there.
    """
    return str(json.loads(_read(settings, f"{location}/metadata").splitlines()[0])["id"])


def batch_offsets(settings: Settings, location: str, batch_id: int | str) -> list[str]:
    """The end offsets of batch ``batch_id``: one JSON text per source.

    Raises:
        OSError: The batch has no offsets file (never planned, or purged).
    """
    return _read(settings, f"{location}/offsets/{batch_id}").splitlines()[2:]


def find(settings: Settings, root: str, wanted: str) -> str | None:
    """The checkpoint folder directly under ``root`` of the query with id ``wanted``."""
    from pyarrow import fs as pafs

    filesystem, path = objectstore.filesystem(settings, root)
    try:
        entries = filesystem.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    except OSError:
        return None
    scheme = root.split("://", 1)[0] + "://" if objectstore.on_store(root) else ""
    for entry in sorted(entries, key=lambda e: e.path):
        if entry.type != pafs.FileType.Directory:
            continue
        folder = f"{scheme}{entry.path}"
        try:
            if query_id(settings, folder) == wanted:
                return folder
        except (OSError, ValueError, KeyError, IndexError):
            continue
    return None
