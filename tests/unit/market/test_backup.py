"""Backup and restore of the data directory, with integrity checks."""

from __future__ import annotations

import gzip
import tarfile

import pytest

from core.errors import InvalidInput
from core.storage import Storage
from market.backup import backup, restore, verify


@pytest.fixture
def data_dir(tmp_path):
    root = tmp_path / "data"
    (root / "history/date=2026-11-02/symbol=AAPL").mkdir(parents=True)
    (root / "history/date=2026-11-02/symbol=AAPL/part-1.parquet").write_bytes(b"x" * 5000)
    (root / "index").mkdir()
    (root / "index/vectors.bin").write_bytes(bytes(range(256)) * 10)
    (root / "secret.key").write_text("s3cret")
    (root / "secret.key").chmod(0o600)
    (root / "recordings/s1").mkdir(parents=True)
    (root / "recordings/s1/big.parquet").write_bytes(b"r")
    return root


def test_backup_then_restore_round_trips_files_and_modes(data_dir, tmp_path):
    archive = backup(data_dir, tmp_path / "backups")
    (data_dir / "secret.key").write_text("changed")

    previous = restore(archive, data_dir)

    assert (data_dir / "secret.key").read_text() == "s3cret"
    assert (data_dir / "secret.key").stat().st_mode & 0o777 == 0o600
    assert (data_dir / "index/vectors.bin").read_bytes() == bytes(range(256)) * 10
    assert not (data_dir / "recordings").exists()
    assert (previous / "secret.key").read_text() == "changed"
    assert set(verify(archive)["files"]) == {
        "history/date=2026-11-02/symbol=AAPL/part-1.parquet", "index/vectors.bin", "secret.key"}


def test_restore_refuses_a_corrupted_archive(data_dir, tmp_path):
    archive = backup(data_dir, tmp_path / "backups")
    raw = bytearray(archive.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    archive.write_bytes(bytes(raw))

    with pytest.raises(InvalidInput, match="corrupt"):
        restore(archive, data_dir)

    assert (data_dir / "secret.key").read_text() == "s3cret"


def test_restore_refuses_a_file_that_fails_its_checksum(data_dir, tmp_path):
    archive = backup(data_dir, tmp_path / "backups")
    # Rebuild the archive with one member altered and no sidecar: the manifest must catch it.
    tampered = tmp_path / "tampered.tar.gz"
    with tarfile.open(archive, "r:gz") as src, tarfile.open(tampered, "w:gz") as dst:
        for member in src.getmembers():
            data = src.extractfile(member).read()
            if member.name == "secret.key":
                data = b"evil!!"
            member.size = len(data)
            import io

            dst.addfile(member, io.BytesIO(data))

    with pytest.raises(InvalidInput, match="checksum"):
        restore(tampered, data_dir)

    assert (data_dir / "secret.key").read_text() == "s3cret"
    with gzip.open(archive) as handle:
        assert handle.read(1)


def test_data_dir_given_as_a_uri_backs_up_and_restores_into_an_empty_location(data_dir,
                                                                               tmp_path):
    archive = backup(f"file://{data_dir}", tmp_path / "backups")
    target = f"file://{tmp_path}/restored"

    location = restore(archive, target)

    restored = Storage(target)
    assert location == target
    assert restored.read_text("secret.key") == "s3cret"
    assert restored.read_bytes("index/vectors.bin") == bytes(range(256)) * 10
    assert sorted(restored.files()) == sorted(verify(archive)["files"]) == [
        "history/date=2026-11-02/symbol=AAPL/part-1.parquet", "index/vectors.bin", "secret.key"]
    with pytest.raises(InvalidInput, match="not empty"):
        restore(archive, target)
    with pytest.raises(InvalidInput, match="not empty"):
        restore(archive, f"file://{data_dir}")
    assert (data_dir / "secret.key").read_text() == "s3cret"
