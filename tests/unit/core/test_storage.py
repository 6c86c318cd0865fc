"""core.storage on a plain path, a file:// URI and pyarrow's in-memory filesystem (an object
store: no renames), and the data-dir URIs Settings accepts."""

from __future__ import annotations

import pickle
import threading
from pathlib import Path

import pyarrow.fs as pafs
import pytest
from pydantic import ValidationError

from core.settings import Settings
from core.storage import Storage, StorageError, validate_location


@pytest.fixture(params=["path", "file_uri", "memory"])
def storage(request, tmp_path):
    if request.param == "path":
        return Storage(tmp_path / "data")
    if request.param == "file_uri":
        return Storage(f"file://{tmp_path}/data")
    return Storage("bucket/data", filesystem=pafs._MockFileSystem())


def test_written_files_read_back_and_list_sorted(storage):
    storage.write_text("b/two.txt", "2")
    storage.write_bytes("a.bin", b"\x00\x01")
    storage.write_text("b/c/three.txt", "3")

    assert storage.read_bytes("a.bin") == b"\x00\x01"
    assert storage.read_text("b/c/three.txt") == "3"
    assert storage.listdir() == ["a.bin", "b"]
    assert storage.listdir("b") == ["c", "two.txt"]
    assert storage.files() == ["a.bin", "b/c/three.txt", "b/two.txt"]
    assert storage.files("b") == ["c/three.txt", "two.txt"]
    assert storage.listdir("missing") == []
    assert storage.size("a.bin") == 2


def test_missing_file_raises_file_not_found(storage):
    with pytest.raises(FileNotFoundError):
        storage.read_bytes("nope.txt")

    assert not storage.exists("nope.txt")


def test_failed_write_leaves_the_old_file_and_no_temporary(storage):
    storage.write_text("CURRENT", "v1")

    def crash_mid_write() -> None:
        with storage.open_output("CURRENT") as out:
            out.write(b"v2-half")
            raise RuntimeError("crash mid-write")

    with pytest.raises(RuntimeError):
        crash_mid_write()

    assert storage.read_text("CURRENT") == "v1"
    assert storage.files() == ["CURRENT"]


def test_replacing_a_file_while_readers_read_never_shows_a_partial_one(storage):
    old, new = b"a" * 200_000, b"b" * 300_000
    storage.write_bytes("blob", old)
    seen: set[bytes] = set()
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            data = storage.read_bytes("blob")
            seen.add(data[:1] + bytes([len(data) // 100_000, len(set(data))]))

    reader = threading.Thread(target=read)
    reader.start()
    for _ in range(20):
        storage.write_bytes("blob", new)
        storage.write_bytes("blob", old)
    stop.set()
    reader.join()

    assert seen <= {b"a\x02\x01", b"b\x03\x01"}
    assert seen


def test_delete_move_and_delete_dir(storage):
    storage.write_text("x/one", "1")
    storage.write_text("x/two", "2")

    storage.move("x/one", "y/one")
    storage.delete("x/two")
    storage.delete("x/never", missing_ok=True)
    storage.delete_dir("y")
    storage.delete_dir("never")

    assert storage.files() == []


def test_child_joins_and_refuses_to_leave_its_directory(storage):
    child = storage / "index"
    child.write_text("CURRENT", "v000001")

    assert storage.read_text("index/CURRENT") == "v000001"
    assert child.uri("versions") == storage.uri("index", "versions")
    assert child.name == "index"
    with pytest.raises(StorageError, match="leaves"):
        storage.path("../escape")


def test_put_dir_publishes_a_local_tree(storage, tmp_path):
    staging = storage.staging_dir()
    (staging / "lexical").mkdir()
    (staging / "chunks.parquet").write_bytes(b"PAR1")
    (staging / "lexical" / "terms.json").write_text("{}")

    storage.put_dir(staging, "versions/v000001")

    assert storage.files("versions/v000001") == ["chunks.parquet", "lexical/terms.json"]


def test_local_copy_is_the_directory_itself_on_disk_and_a_cached_download_otherwise(
        storage, tmp_path):
    storage.write_text("versions/v1/a.txt", "A")
    storage.write_text("versions/v1/sub/b.txt", "B")
    cache = tmp_path / "cache" / "v1"

    folder = storage.local_copy("versions/v1", cache)
    storage.write_text("versions/v1/a.txt", "changed")  # versions never change; the copy is kept
    again = storage.local_copy("versions/v1", cache)

    assert (folder / "sub" / "b.txt").read_text() == "B"
    if storage.is_local:
        assert folder == Path(storage.path("versions/v1"))
        assert not cache.exists()
    else:
        assert folder == again == cache
        assert (again / "a.txt").read_text() == "A"
    with pytest.raises(FileNotFoundError):
        storage.local_copy("versions/none", tmp_path / "cache" / "none")


@pytest.mark.parametrize("as_uri", [False, True], ids=["path", "file_uri"])
def test_storage_pickles_to_the_same_directory(tmp_path, as_uri):
    storage = Storage(f"file://{tmp_path}" if as_uri else tmp_path)
    storage.write_text("k", "v")

    clone = pickle.loads(pickle.dumps(storage / "sub"))

    clone.write_text("w", "x")
    assert storage.read_text("sub/w") == "x"
    assert clone == storage / "sub"


def test_plain_path_and_file_uri_name_the_same_files(tmp_path):
    Storage(tmp_path).write_text("history/x", "1")

    assert Storage(f"file://{tmp_path}").read_text("history/x") == "1"
    assert Storage(f"file://{tmp_path}").is_local


def test_a_uri_query_stays_at_the_end_when_joining(tmp_path):
    storage = Storage(f"file://{tmp_path}")
    storage.location = "s3://bucket/prefix?endpoint_override=localhost:9000"  # not opened

    assert storage.uri("index", "CURRENT") == (
        "s3://bucket/prefix/index/CURRENT?endpoint_override=localhost:9000")
    assert (storage / "history").location == (
        "s3://bucket/prefix/history?endpoint_override=localhost:9000")


@pytest.mark.parametrize(("location", "message"), [
    ("ftp://host/dir", "unsupported storage scheme 'ftp'"),
    ("s3:///prefix", "names no bucket"),
    ("file://relative/dir", "absolute path"),
    ("  ", "must not be empty"),
])
def test_bad_locations_are_refused_with_the_reason(location, message):
    with pytest.raises(ValueError, match=message):
        validate_location(location)


def test_settings_keep_an_object_store_data_dir_as_url_and_a_local_dir_for_node_files(
        tmp_path, monkeypatch):
    monkeypatch.setenv("MARKETRAY_DATA_DIR", "s3://marketray-data/prod")
    monkeypatch.setenv("MARKETRAY_LOCAL_DIR", str(tmp_path / "node"))

    settings = Settings()
    rebuilt = Settings(**settings.model_dump(mode="json"))  # as actors and replicas rebuild it

    assert settings.data_url == rebuilt.data_url == "s3://marketray-data/prod"
    assert settings.data_dir == rebuilt.data_dir == tmp_path / "node"


def test_settings_file_uri_data_dir_is_local_and_shared_storage_is_the_uri(tmp_path):
    settings = Settings(data_dir=f"file://{tmp_path}/d")

    assert settings.data_dir == tmp_path / "d"
    assert settings.storage("history").location == f"file://{tmp_path}/d/history"
    assert Settings(data_dir=tmp_path).storage("index").location == f"{tmp_path}/index"
    assert Settings(data_dir=tmp_path).data_url is None


def test_settings_refuse_an_unknown_scheme(monkeypatch):
    monkeypatch.setenv("MARKETRAY_DATA_DIR", "htp://typo/data")

    with pytest.raises(ValidationError, match="unsupported storage scheme 'htp'"):
        Settings()
