"""Shared state on a local path, a shared volume or an object store, through pyarrow.fs.

A :class:`Storage` is a directory named by a local path (``./data``, ``/mnt/shared``) or
a URI (``file:///abs/path``, ``s3://bucket/prefix``, ``gs://bucket/prefix``); every
node that builds one from the same name sees the same files. History, recordings, the
knowledge index, uploads and the research lake keep their files through it, so the
same code runs on one disk, a ReadWriteMany volume and a bucket::

    store = Storage("s3://marketray/prod") / "index"
    store.write_text("CURRENT", "v000007")        # readers see the old or the new object
    folder = store.local_copy("versions/v000007", cache / "v000007")  # a real directory

Writes are whole-object: on a local filesystem a temporary file is renamed over the
target, on an object store one put is atomic per object. Credentials come from the
environment pyarrow reads (``AWS_ACCESS_KEY_ID``..., ``GOOGLE_APPLICATION_CREDENTIALS``).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs

# The schemes pyarrow's FileSystem.from_uri resolves; anything else is a typo.
SCHEMES = ("file", "s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss")
# pyarrow filesystems whose directories are only key prefixes.
FLAT_STORES = frozenset({"s3", "gcs", "abfs"})
_URI = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://(.*)$")


class StorageError(Exception):
    """A storage location that cannot be used (bad URI, unknown scheme, no filesystem)."""


def split_uri(location: str) -> tuple[str | None, str]:
    """Return ``(scheme, rest)`` of a URI, ``(None, location)`` for a plain path."""
    match = _URI.match(location)
    return (match.group(1).lower(), match.group(2)) if match else (None, location)


def validate_location(location: str | Path) -> str:
    """Return ``location`` checked: a plain path, or a URI of a known scheme with a bucket.

    Raises ``ValueError`` saying what is wrong; nothing is contacted.
    """
    text = str(location).strip()
    if not text:
        raise ValueError("the data directory must not be empty")
    scheme, rest = split_uri(text)
    if scheme is None:
        return text
    if scheme not in SCHEMES:
        raise ValueError(f"unsupported storage scheme {scheme!r} in {text!r}: use a path or "
                         f"one of {', '.join(s + '://' for s in SCHEMES)}")
    if scheme == "file":
        if not rest.startswith("/"):
            raise ValueError(f"{text!r}: a file:// URI needs an absolute path (file:///abs/dir)")
    elif not rest.split("/", 1)[0].split("?", 1)[0]:
        raise ValueError(f"{text!r} names no bucket or host")
    return text


def is_uri(location: str | Path) -> bool:
    """Return whether ``location`` is a URI (``scheme://...``) rather than a plain path."""
    return split_uri(str(location))[0] is not None


class Storage:
    """A directory on some filesystem; paths given to its methods are relative to it.

    Build it from a location (path or URI) or pass ``filesystem`` and a path on it (tests
    use pyarrow's in-memory filesystem to run the object-store branches). ``/`` joins.
    Picklable: Ray actors and replicas can receive one.
    """

    def __init__(self, location: str | Path, *, filesystem: pafs.FileSystem | None = None) -> None:
        text = validate_location(location)
        if filesystem is not None:
            self.fs, self.root = filesystem, text.rstrip("/")
            self.location = text
        elif is_uri(text):
            try:
                self.fs, root = pafs.FileSystem.from_uri(text)
            except (pa.ArrowException, OSError, ValueError) as exc:
                raise StorageError(f"cannot open {text!r}: {exc}") from exc
            self.root = root.rstrip("/") or root
            self.location = text.rstrip("/")
        else:
            absolute = str(Path(text).expanduser().resolve())
            self.fs, self.root = pafs.LocalFileSystem(), absolute
            self.location = absolute
        self.is_local = isinstance(self.fs, pafs.LocalFileSystem)
        self._injected = filesystem is not None

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt from the location on the receiving node, so it uses that node's
        # credentials; an injected filesystem travels as it is.
        if self._injected:
            return (_rebuild, (self.location, self.fs, self.root))
        return (Storage, (self.location,))

    def __repr__(self) -> str:
        return f"Storage({self.location!r})"

    def __str__(self) -> str:
        return self.location

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Storage) and (self.location, self.root) == (other.location,
                                                                            other.root)

    def __hash__(self) -> int:
        return hash((self.location, self.root))

    def __truediv__(self, part: str) -> Storage:
        return self.child(part)

    def child(self, *parts: str) -> Storage:
        """Return the storage of a subdirectory (nothing is created)."""
        clone = object.__new__(Storage)
        clone.fs, clone.is_local, clone._injected = self.fs, self.is_local, self._injected
        clone.root = self.path(*parts)
        clone.location = _join_location(self.location, *parts)
        return clone

    @property
    def name(self) -> str:
        """Return the last component of this directory's path."""
        return self.root.rstrip("/").rsplit("/", 1)[-1]

    def path(self, *parts: str) -> str:
        """Return the filesystem path of ``parts`` under this directory."""
        return _join(self.root, *parts)

    def uri(self, *parts: str) -> str:
        """Return the location (path or URI) of ``parts`` under this directory."""
        return _join_location(self.location, *parts)

    def local_path(self, *parts: str) -> Path:
        """Return the real local path of ``parts``; only on a local filesystem."""
        if not self.is_local:
            raise StorageError(f"{self.location} is not on a local filesystem")
        return Path(self.path(*parts))

    # Reading.

    def exists(self, relative: str = "") -> bool:
        """Return whether a file or directory exists at ``relative``."""
        return bool(self._info(relative).type != pafs.FileType.NotFound)

    def is_dir(self, relative: str = "") -> bool:
        """Return whether ``relative`` is a directory (on object stores: a non-empty prefix)."""
        return bool(self._info(relative).type == pafs.FileType.Directory)

    def read_bytes(self, relative: str) -> bytes:
        """Return a file's contents; ``FileNotFoundError`` when it does not exist."""
        try:
            with self.fs.open_input_stream(self.path(relative)) as stream:
                return bytes(stream.read())
        except (FileNotFoundError, OSError) as exc:
            if not self.exists(relative):
                raise FileNotFoundError(self.uri(relative)) from exc
            raise

    def read_text(self, relative: str) -> str:
        """Return a UTF-8 file's contents; ``FileNotFoundError`` when it does not exist."""
        return self.read_bytes(relative).decode()

    def open_input(self, relative: str) -> Any:
        """Return a seekable binary reader of a file (Parquet readers take it)."""
        return self.fs.open_input_file(self.path(relative))

    def listdir(self, relative: str = "") -> list[str]:
        """Return the names of the entries directly under ``relative``, sorted; [] if none."""
        selector = pafs.FileSelector(self.path(relative), allow_not_found=True)
        return sorted(info.base_name for info in self.fs.get_file_info(selector))

    def files(self, relative: str = "") -> list[str]:
        """Return every file under ``relative`` (recursively) as paths relative to it, sorted."""
        base = self.path(relative).rstrip("/")
        selector = pafs.FileSelector(base, allow_not_found=True, recursive=True)
        return sorted(info.path[len(base) + 1:] for info in self.fs.get_file_info(selector)
                      if info.type == pafs.FileType.File)

    def size(self, relative: str) -> int:
        """Return a file's size in bytes."""
        return int(self._info(relative).size or 0)

    def _info(self, relative: str) -> pafs.FileInfo:
        return self.fs.get_file_info(self.path(relative))

    # Writing.

    def makedirs(self, relative: str = "") -> None:
        """Create ``relative`` and its parents (a no-op on object stores)."""
        self._create_dir(self.path(relative))

    def _create_dir(self, path: str) -> None:
        # Buckets have no directories: creating one would cost requests on every write.
        if self.fs.type_name not in FLAT_STORES:
            self.fs.create_dir(path, recursive=True)

    def write_bytes(self, relative: str, data: bytes | bytearray | memoryview) -> None:
        """Replace a file's contents atomically: readers see the old or the new file whole."""
        with self.open_output(relative) as stream:
            stream.write(data)

    def write_text(self, relative: str, text: str) -> None:
        """Replace a UTF-8 file atomically (see :meth:`write_bytes`)."""
        self.write_bytes(relative, text.encode())

    def open_output(self, relative: str) -> _AtomicOutput:
        """Return a writer whose file appears, whole, at ``relative`` when it closes.

        A local file is written beside its target and renamed over it; an object-store
        object is put once at close. An exception inside ``with`` leaves nothing behind.
        """
        target = self.path(relative)
        parent = target.rsplit("/", 1)[0] if "/" in target else ""
        if parent:
            self._create_dir(parent)
        if self.is_local:
            temporary = f"{parent}/.{target.rsplit('/', 1)[-1]}.{uuid.uuid4().hex[:8]}.tmp"
            return _AtomicOutput(self.fs, temporary, target)
        return _AtomicOutput(self.fs, target, None)

    def delete(self, relative: str, *, missing_ok: bool = True) -> None:
        """Remove one file."""
        try:
            self.fs.delete_file(self.path(relative))
        except FileNotFoundError:
            if not missing_ok:
                raise

    def delete_dir(self, relative: str = "") -> None:
        """Remove a directory and everything under it; nothing when it does not exist."""
        if self.exists(relative):
            self.fs.delete_dir(self.path(relative))

    def move(self, source: str, destination: str) -> None:
        """Move a file or directory within this storage (a rename locally; a copy and
        delete on object stores, so not atomic there)."""
        target = self.path(destination)
        if "/" in target:
            self._create_dir(target.rsplit("/", 1)[0])
        self.fs.move(self.path(source), target)

    def put_dir(self, local: Path, relative: str) -> None:
        """Make the local directory ``local`` appear at ``relative`` (which must not exist).

        On a local filesystem it is renamed there (atomic when on the same filesystem, and
        ``local`` is gone afterwards); on an object store its files are uploaded, the
        caller publishes a pointer afterwards.
        """
        if self.is_local:
            target = self.local_path(relative)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.rename(local, target)
            except OSError:  # another filesystem (tmp on another device): copy, then drop
                shutil.copytree(local, target)
                shutil.rmtree(local, ignore_errors=True)
            return
        for file in sorted(p for p in local.rglob("*") if p.is_file()):
            with open(file, "rb") as handle, self.open_output(
                    _join(relative, file.relative_to(local).as_posix())) as out:
                shutil.copyfileobj(handle, out, 1 << 20)

    def staging_dir(self) -> Path:
        """Return a new empty local directory to build a tree in before :meth:`put_dir`.

        Locally it sits beside the data (under ``.staging-*``) so the rename is atomic;
        for object stores it is a temporary directory of this node.
        """
        if self.is_local:
            folder = self.local_path(f".staging-{uuid.uuid4().hex}")
            folder.mkdir(parents=True)
            return folder
        return Path(tempfile.mkdtemp(prefix="marketray-staging-"))

    def local_copy(self, relative: str, target: Path | str) -> Path:
        """Return a local directory with the contents of ``relative`` (for FAISS, mmaps).

        On a local filesystem this is the directory itself and ``target`` is unused.
        Otherwise the files are downloaded into ``target`` once (a complete copy appears
        there by rename; later calls reuse it): use it for trees that never change, such
        as published index versions. ``FileNotFoundError`` when ``relative`` holds nothing.
        """
        if self.is_local:
            folder = self.local_path(relative)
            if not folder.is_dir():
                raise FileNotFoundError(self.uri(relative))
            return folder
        target = Path(target)
        if target.is_dir():
            return target
        names = self.files(relative)
        if not names:
            raise FileNotFoundError(self.uri(relative))
        partial = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.partial")
        partial.mkdir(parents=True)
        try:
            for name in names:
                destination = partial / name
                destination.parent.mkdir(parents=True, exist_ok=True)
                with self.fs.open_input_stream(self.path(relative, name)) as source, \
                        open(destination, "wb") as out:
                    shutil.copyfileobj(source, out, 1 << 20)
            os.rename(partial, target)
        except OSError:
            shutil.rmtree(partial, ignore_errors=True)
            if not target.is_dir():  # else another thread or process finished it first
                raise
        return target


class _AtomicOutput:
    """A binary writer that publishes its file on a clean close and leaves nothing on error.

    Locally it streams into a temporary file renamed at close; for object stores it
    buffers in memory and puts the object once at close, because a stream's close would
    publish a partial object even after an error.
    """

    def __init__(self, fs: pafs.FileSystem, path: str, rename_to: str | None) -> None:
        self._fs, self._path, self._rename_to = fs, path, rename_to
        self._stream: Any = fs.open_output_stream(path) if rename_to else io.BytesIO()

    def write(self, data: bytes | bytearray | memoryview) -> int:
        written: int = self._stream.write(data)
        return written

    def __enter__(self) -> _AtomicOutput:
        return self

    def __exit__(self, kind: object, value: object, traceback: object) -> None:
        if self._rename_to is None:
            if kind is None:
                with self._fs.open_output_stream(self._path) as out:
                    out.write(self._stream.getbuffer())
            return
        self._stream.close()
        if kind is None:
            self._fs.move(self._path, self._rename_to)
        else:
            with contextlib.suppress(OSError):
                self._fs.delete_file(self._path)


def _join(base: str, *parts: str) -> str:
    pieces = [p.strip("/") for p in parts if p and p.strip("/")]
    for piece in pieces:
        if any(segment == ".." for segment in piece.split("/")):
            raise StorageError(f"refusing a path that leaves its directory: {piece!r}")
    if not pieces:
        return base
    return base.rstrip("/") + "/" + "/".join(pieces) if base not in ("", "/") else \
        base + "/".join(pieces)


def _join_location(location: str, *parts: str) -> str:
    """Join ``parts`` onto a location, keeping a URI's query (``?endpoint_override=...``) last."""
    if is_uri(location) and "?" in location:
        base, query = location.split("?", 1)
        return f"{_join(base, *parts)}?{query}"
    return _join(location, *parts)


def _rebuild(location: str, fs: pafs.FileSystem, root: str) -> Storage:
    clone = object.__new__(Storage)
    clone.fs, clone.root, clone.location = fs, root, location
    clone.is_local, clone._injected = isinstance(fs, pafs.LocalFileSystem), True
    return clone
