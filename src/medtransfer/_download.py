"""Download with resume, progress bar, checksum and atomic rename; file digests. Shared by data and model hubs."""

from __future__ import annotations

import hashlib
import logging
import os
import urllib.error
import urllib.request
from pathlib import Path

from medtransfer.errors import ChecksumError, DownloadError

log = logging.getLogger(__name__)
_CHUNK = 1 << 20


def file_digest(path: str | os.PathLike[str], algo: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB chunks."""
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def verify(path: str | os.PathLike[str], expected: str, algo: str = "sha256", *, fix: str = "") -> None:
    """Raise ChecksumError, with both digests, when `path`'s digest differs from `expected`."""
    got = file_digest(path, algo)
    if got.lower() != expected.lower():
        raise ChecksumError(
            f"{str(path)!r} has {algo} {got}, but {expected} was expected: the file is corrupt, truncated or a "
            f"different version. {fix or 'Delete it and download it again.'}"
        )


def download(url: str, dest: str | os.PathLike[str], *, expected: str | None = None, algo: str = "sha256",
             progress: bool = True, timeout: float = 30.0) -> Path:
    """Download `url` to `dest`: resumes a partial `.part` file, checks the digest, then renames atomically.

    Nothing is left at `dest` unless the whole file arrived and matched `expected`.

    Raises:
        DownloadError: offline or HTTP failure; the message names the URL and where to put the file by hand.
        ChecksumError: the downloaded bytes do not match `expected` (the partial file is removed).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    start = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={start}-"} if start else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            if start and response.status != 206:  # server ignored the range: start again
                start = 0
            total = int(response.headers.get("Content-Length") or 0) + start
            _stream(response, part, start=start, total=total, label=dest.name, progress=progress)
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        raise DownloadError(
            f"Could not download {url} ({e}). If this machine is offline, download it elsewhere and put it at "
            f"{dest}" + (f" ({algo} {expected})." if expected else ".")
        ) from e
    if expected is not None:
        try:
            verify(part, expected, algo, fix=f"Downloaded from {url}; try again, or place a good copy at {dest}.")
        except ChecksumError:
            part.unlink(missing_ok=True)
            raise
    os.replace(part, dest)
    return dest


def _stream(response: object, part: Path, *, start: int, total: int, label: str, progress: bool) -> None:
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    with open(part, "ab" if start else "wb") as f, Progress(
        "[progress.description]{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn(),
        disable=not progress, transient=True,
    ) as bar:
        task = bar.add_task(f"download {label}", total=total or None, completed=start)
        while chunk := response.read(_CHUNK):  # type: ignore[attr-defined]
            f.write(chunk)
            bar.advance(task, len(chunk))
