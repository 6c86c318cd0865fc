"""Back up and restore the data directory (history, index, secret) with integrity checks.

A backup is ``marketray-backup-<UTC stamp>.tar.gz`` holding the data
directory's files plus ``MANIFEST.json`` (size and SHA-256 of every file),
with a sidecar ``<archive>.sha256`` for the archive itself. :func:`restore`
checks the sidecar, extracts into a staging directory beside the target,
checks every file against the manifest, and only then swaps it in; the
previous contents are kept as ``<data_dir>.pre-restore-<stamp>``.

A data dir on an object store (a URI or a :class:`core.storage.Storage`) is backed up
the same way, its files read through pyarrow.fs (no file modes); it is restored only
into an empty location, since an object store cannot swap a directory in one step:
point ``MARKETRAY_DATA_DIR`` at the new prefix afterwards.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from core.errors import InvalidInput
from core.storage import Storage, is_uri

MANIFEST = "MANIFEST.json"
# Derived or bulky directories a backup leaves out by default.
DEFAULT_EXCLUDE = ("recordings", "backups")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def _remote(location: Path | str | Storage) -> Storage | None:
    """Return ``location`` as a Storage when it is one or a URI, ``None`` for a path."""
    if isinstance(location, Storage):
        return location
    return Storage(location) if is_uri(str(location)) else None


def backup(
    data_dir: Path | str | Storage, dest: Path | str, *,
    exclude: tuple[str, ...] = DEFAULT_EXCLUDE,
) -> Path:
    """Write a verified archive of ``data_dir`` into directory ``dest``; return its path.

    Top-level entries named in ``exclude`` are skipped (recordings, earlier backups).
    ``data_dir`` may be a path, a URI or a Storage; ``dest`` is a local directory.
    """
    storage = _remote(data_dir)
    if storage is not None:
        return _backup_storage(storage, Path(dest).resolve(), exclude)
    source = Path(str(data_dir)).resolve()
    if not source.is_dir():
        raise InvalidInput(f"data directory {source} does not exist")
    out_dir = Path(dest).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, dict[str, object]] = {}
    paths: list[Path] = []
    for path in sorted(source.rglob("*")):
        rel = path.relative_to(source)
        if rel.parts[0] in exclude or not path.is_file() or path.is_symlink():
            continue
        if out_dir == path.parent or out_dir in path.parents:
            continue
        if path.name.startswith(".") and path.name.endswith(".tmp"):
            continue
        files[rel.as_posix()] = {"size": path.stat().st_size, "sha256": _sha256(path),
                                 "mode": path.stat().st_mode & 0o777}
        paths.append(path)
    manifest = {"created": datetime.now(UTC).isoformat(), "source": str(source),
                "files": files}
    archive = out_dir / f"marketray-backup-{_stamp()}.tar.gz"
    tmp = archive.with_name(archive.name + ".partial")
    manifest_path = out_dir / f".{archive.name}.manifest"
    manifest_path.write_text(json.dumps(manifest, indent=1, sort_keys=True))
    try:
        with tarfile.open(tmp, "w:gz") as tar:
            tar.add(manifest_path, arcname=MANIFEST)
            for path in paths:
                tar.add(path, arcname=path.relative_to(source).as_posix(), recursive=False)
    finally:
        manifest_path.unlink(missing_ok=True)
    os.replace(tmp, archive)
    Path(f"{archive}.sha256").write_text(f"{_sha256(archive)}  {archive.name}\n")
    return archive


def _backup_storage(source: Storage, out_dir: Path, exclude: tuple[str, ...]) -> Path:
    """Archive the files of a data dir read through ``source`` (see :func:`backup`)."""
    if not source.is_dir():
        raise InvalidInput(f"data directory {source.location} does not exist")
    names = [name for name in source.files() if name.split("/", 1)[0] not in exclude
             and not name.rsplit("/", 1)[-1].startswith(".")]
    out_dir.mkdir(parents=True, exist_ok=True)
    archive = out_dir / f"marketray-backup-{_stamp()}.tar.gz"
    tmp = archive.with_name(archive.name + ".partial")
    files: dict[str, dict[str, object]] = {}
    with tarfile.open(tmp, "w:gz") as tar:
        for name in names:
            data = source.read_bytes(name)
            files[name] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
            _add_bytes(tar, name, data)
        manifest = {"created": datetime.now(UTC).isoformat(), "source": source.location,
                    "files": files}
        _add_bytes(tar, MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode())
    os.replace(tmp, archive)
    Path(f"{archive}.sha256").write_text(f"{_sha256(archive)}  {archive.name}\n")
    return archive


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o644
    info.mtime = int(datetime.now(UTC).timestamp())
    tar.addfile(info, io.BytesIO(data))


def verify(archive: Path | str) -> dict[str, object]:
    """Check the archive's sidecar checksum (when present) and return its manifest."""
    path = Path(archive)
    if not path.is_file():
        raise InvalidInput(f"backup {path} does not exist")
    sidecar = Path(f"{path}.sha256")
    if sidecar.exists():
        expected = sidecar.read_text().split()[0]
        if _sha256(path) != expected:
            raise InvalidInput(f"backup {path.name} is corrupt: checksum does not match")
    try:
        with tarfile.open(path, "r:gz") as tar:
            member = tar.extractfile(MANIFEST)
            if member is None:
                raise InvalidInput(f"backup {path.name} has no manifest")
            manifest: dict[str, object] = json.loads(member.read())
    except (tarfile.TarError, OSError, KeyError, json.JSONDecodeError) as exc:
        raise InvalidInput(f"backup {path.name} is unreadable: {exc}") from exc
    return manifest


def restore(archive: Path | str, data_dir: Path | str | Storage) -> Path | str:
    """Replace ``data_dir`` with the archive's contents after verifying every file.

    Returns where the previous contents were moved (or the target, if it was empty). A
    URI or Storage target must hold no files yet (``InvalidInput`` otherwise); its
    location is returned.
    """
    manifest = verify(archive)
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise InvalidInput("backup manifest lists no files")
    storage = _remote(data_dir)
    if storage is not None:
        if storage.files():
            raise InvalidInput(f"{storage.location} is not empty: restore into an empty "
                               "location and point MARKETRAY_DATA_DIR at it")
        staging = Path(tempfile.mkdtemp(prefix="marketray-restore-"))
        try:
            _extract_verified(archive, files, staging)
            for name in files:
                storage.write_bytes(name, (staging / name).read_bytes())
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return storage.location
    target = Path(str(data_dir)).resolve()
    staging = target.with_name(f".{target.name}.restore-{_stamp()}")
    staging.mkdir(parents=True)
    try:
        _extract_verified(archive, files, staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    previous = target
    if target.exists() and any(target.iterdir()):
        previous = target.with_name(f"{target.name}.pre-restore-{_stamp()}")
        target.rename(previous)
    elif target.exists():
        target.rmdir()
    staging.rename(target)
    return previous


def _extract_verified(archive: Path | str, files: dict[str, object], staging: Path) -> None:
    """Extract the archive's listed files into ``staging`` and check each one's checksum."""
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar.getmembers():
            if member.name == MANIFEST:
                continue
            if member.name not in files or not member.isfile():
                raise InvalidInput(f"backup holds an unlisted entry {member.name!r}")
            tar.extract(member, staging, filter="data")
    for name, meta in files.items():
        path = staging / name
        if not path.is_file():
            raise InvalidInput(f"backup is missing {name}")
        if not isinstance(meta, dict) or _sha256(path) != meta.get("sha256"):
            raise InvalidInput(f"backup file {name} fails its checksum")
        mode = meta.get("mode")
        if isinstance(mode, int):
            path.chmod(mode)
