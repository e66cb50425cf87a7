from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from medtransfer._download import download, file_digest, verify
from medtransfer.errors import ChecksumError, DownloadError


def _source(tmp_path: Path, payload: bytes = b"x" * 3_000_000) -> tuple[Path, str]:
    src = tmp_path / "src.bin"
    src.write_bytes(payload)
    return src, hashlib.sha256(payload).hexdigest()


def test_digest_and_verify(tmp_path: Path) -> None:
    src, sha = _source(tmp_path)
    assert file_digest(src) == sha and file_digest(src, "md5") == hashlib.md5(src.read_bytes()).hexdigest()
    verify(src, sha)
    with pytest.raises(ChecksumError, match=f"has sha256 {sha}, but 0+ was expected"):
        verify(src, "0" * 64)


def test_download_verifies_and_renames_atomically(tmp_path: Path) -> None:
    src, sha = _source(tmp_path)
    dest = download(src.as_uri(), tmp_path / "out" / "f.bin", expected=sha, progress=False)
    assert dest.read_bytes() == src.read_bytes() and not list(dest.parent.glob("*.part"))


def test_resumes_a_partial_download(tmp_path: Path) -> None:
    src, sha = _source(tmp_path)
    dest = tmp_path / "f.bin"
    (tmp_path / "f.bin.part").write_bytes(src.read_bytes()[:1000])  # file:// ignores Range: restarts cleanly
    download(src.as_uri(), dest, expected=sha, progress=False)
    assert file_digest(dest) == sha


def test_bad_checksum_leaves_nothing(tmp_path: Path) -> None:
    src, _ = _source(tmp_path)
    with pytest.raises(ChecksumError):
        download(src.as_uri(), tmp_path / "f.bin", expected="0" * 64, progress=False)
    assert not list(tmp_path.glob("f.bin*"))


def test_unreachable_url_says_where_to_put_the_file(tmp_path: Path) -> None:
    url = (tmp_path / "missing.bin").as_uri()
    with pytest.raises(DownloadError, match=rf"Could not download {url}.*put it at {tmp_path / 'f.bin'} \(sha256 ab"):
        download(url, tmp_path / "f.bin", expected="ab" * 32, progress=False)
