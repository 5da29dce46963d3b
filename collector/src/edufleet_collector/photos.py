"""Where report photos live: files under the upload folder, named by the tickets.

The web stores them (``web.pages.uploads``) and serves them to those who may
see the ticket; the worker deletes them with the reporter's other personal
data. A name comes from the database, so it is resolved strictly inside the
folder.
"""

from __future__ import annotations

from pathlib import Path


def photo_path(upload_dir: str, name: str) -> Path | None:
    """The file of a stored photo, or None if it is missing or the name would
    leave the folder."""
    root = Path(upload_dir).resolve()
    path = (root / name).resolve()
    if root not in path.parents or not path.is_file():
        return None
    return path
