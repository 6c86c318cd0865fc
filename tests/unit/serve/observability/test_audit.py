"""The audit log's hash chain, rotation, verification and reading (no Ray)."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

import pytest

from serve.observability.audit import (
    CLOSE_ACTION,
    GENESIS,
    AuditWriter,
    read_entries,
    verify_dir,
)
from tests.unit.serve.observability.chains import T0, Clock, lines_of, write_chain


def problem_of(directory: Path) -> str:
    reports = verify_dir(directory)
    problems = [str(r.problem) for r in reports if r.problem is not None]
    assert len(problems) == 1, problems
    return problems[0]


def test_entries_hash_chained_with_sha256_of_predecessor(tmp_path: Path) -> None:
    write_chain(tmp_path, 3)

    entries = [json.loads(line) for line in lines_of(tmp_path / "replica-a" / "000001.jsonl")]

    assert [e["seq"] for e in entries] == [1, 2, 3, 4]
    assert entries[0]["prev"] == GENESIS
    for before, after in zip(entries, entries[1:], strict=False):
        assert after["prev"] == before["hash"]
    # Recompute one hash independently: SHA-256 over prev + sorted compact JSON.
    body = {k: v for k, v in entries[1].items() if k != "hash"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert hashlib.sha256((body["prev"] + text).encode()).hexdigest() == entries[1]["hash"]
    assert entries[-1]["action"] == CLOSE_ACTION
    assert entries[0]["time"] == "2025-11-24T16:00:00.000000Z"


def test_intact_chain_verifies(tmp_path: Path) -> None:
    write_chain(tmp_path, 50, max_bytes=2_000)

    reports = verify_dir(tmp_path)

    assert [(r.entries, r.closed, r.problem) for r in reports] == [(51, True, None)]


def test_rotation_by_size_keeps_chain_across_files(tmp_path: Path) -> None:
    write_chain(tmp_path, 40, max_bytes=2_000)

    files = sorted((tmp_path / "replica-a").glob("*.jsonl"))
    first_of_second = json.loads(lines_of(files[1])[0])
    last_of_first = json.loads(lines_of(files[0])[-1])

    assert len(files) > 3
    assert all(f.stat().st_size <= 2_000 for f in files)
    assert first_of_second["prev"] == last_of_first["hash"]


def test_rotation_by_utc_day_starts_new_file(tmp_path: Path) -> None:
    clock = Clock(T0 + 7.9 * 3600)  # 23:54 UTC
    writer = AuditWriter(tmp_path, "c", clock=clock)
    writer.append("a")
    clock.now += 0.2 * 3600  # next UTC day
    writer.append("b")
    writer.flush()

    files = sorted((tmp_path / "c").glob("*.jsonl"))

    assert [json.loads(f.read_text())["action"] for f in files] == ["a", "b"]
    assert verify_dir(tmp_path)[0].problem is None


def test_edited_entry_named(tmp_path: Path) -> None:
    write_chain(tmp_path, 10)
    path = tmp_path / "replica-a" / "000001.jsonl"
    lines = lines_of(path)
    lines[4] = lines[4].replace('"subject":"user1"', '"subject":"mallory"')
    path.write_text("".join(lines))

    problem = problem_of(tmp_path)

    assert "000001.jsonl:5 (seq 5)" in problem
    assert "edited" in problem


def test_edited_and_rehashed_entry_named_by_successor_link(tmp_path: Path) -> None:
    write_chain(tmp_path, 10)
    path = tmp_path / "replica-a" / "000001.jsonl"
    lines = lines_of(path)
    entry = json.loads(lines[4])
    entry["subject"] = "mallory"
    body = {k: v for k, v in entry.items() if k != "hash"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    entry["hash"] = hashlib.sha256((body["prev"] + text).encode()).hexdigest()
    lines[4] = json.dumps(entry) + "\n"
    path.write_text("".join(lines))

    problem = problem_of(tmp_path)

    assert "(seq 6)" in problem
    assert "entry 5 was edited" in problem


def test_deleted_entry_named(tmp_path: Path) -> None:
    write_chain(tmp_path, 10)
    path = tmp_path / "replica-a" / "000001.jsonl"
    lines = lines_of(path)
    del lines[6]
    path.write_text("".join(lines))

    problem = problem_of(tmp_path)

    assert "entry 7 deleted" in problem
    assert "(seq 8)" in problem


def test_swapped_entries_named(tmp_path: Path) -> None:
    write_chain(tmp_path, 10)
    path = tmp_path / "replica-a" / "000001.jsonl"
    lines = lines_of(path)
    lines[2], lines[3] = lines[3], lines[2]
    path.write_text("".join(lines))

    problem = problem_of(tmp_path)

    assert ":3 (seq 4)" in problem
    assert "reordered" in problem


def test_deleted_file_in_middle_named(tmp_path: Path) -> None:
    write_chain(tmp_path, 40, max_bytes=2_000)
    files = sorted((tmp_path / "replica-a").glob("*.jsonl"))
    files[1].unlink()

    problem = problem_of(tmp_path)

    assert files[2].name in problem
    assert "deleted" in problem


def test_deleted_first_file_named(tmp_path: Path) -> None:
    write_chain(tmp_path, 40, max_bytes=2_000)
    sorted((tmp_path / "replica-a").glob("*.jsonl"))[0].unlink()

    assert "deleted" in problem_of(tmp_path)


def test_garbage_line_named(tmp_path: Path) -> None:
    write_chain(tmp_path, 5)
    path = tmp_path / "replica-a" / "000001.jsonl"
    lines = lines_of(path)
    lines[1] = "{not json\n"
    path.write_text("".join(lines))

    assert "000001.jsonl:2: not a valid audit entry" in problem_of(tmp_path)


def test_truncated_chain_reported_unclosed(tmp_path: Path) -> None:
    write_chain(tmp_path, 5, close=False)

    report = verify_dir(tmp_path)[0]

    assert (report.problem, report.closed, report.entries) == (None, False, 5)


def test_each_writer_own_chain_concurrent_threads_verify(tmp_path: Path) -> None:
    writers = [AuditWriter(tmp_path, f"w{i}", max_bytes=4_000) for i in range(4)]

    def work(writer: AuditWriter) -> None:
        for i in range(300):
            writer.append("data.read", subject="s", n=i)
            if i % 37 == 0:
                writer.flush()
        writer.close()

    threads = [threading.Thread(target=work, args=(w,)) for w in writers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    reports = verify_dir(tmp_path)
    assert [(r.chain, r.entries, r.problem) for r in reports] == [
        (f"w{i}", 301, None) for i in range(4)]


def test_secret_fields_masked(tmp_path: Path) -> None:
    writer = AuditWriter(tmp_path, "c")
    writer.append("token.issued", subject="alice", token="eyJhbGciOi.secret", jti="j1")
    writer.flush()

    text = (tmp_path / "c" / "000001.jsonl").read_text()

    assert "eyJhbGciOi" not in text
    assert '"jti":"j1"' in text


def test_unwritable_directory_counts_errors_not_raises(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    writer = AuditWriter(blocker, "c")
    writer.append("a")

    assert writer.flush() == 0
    assert writer.errors == 1


def test_read_entries_filters_time_subject_action(tmp_path: Path) -> None:
    write_chain(tmp_path, 30, chain="a")
    write_chain(tmp_path, 10, chain="b", clock=Clock(T0 + 100))

    by_subject = read_entries(tmp_path, subject="user1", limit=1_000)
    in_window = read_entries(tmp_path, since=T0 + 5, until=T0 + 9, limit=1_000)
    closes = read_entries(tmp_path, action="chain.", limit=1_000)
    newest = read_entries(tmp_path, limit=3)

    assert len(by_subject) == 10 + 3
    assert {e["subject"] for e in by_subject} == {"user1"}
    assert sorted(e["request_id"] for e in in_window) == [f"r{i}" for i in range(5, 10)]
    assert [e["chain"] for e in closes] == ["b", "a"]
    assert [e["time"] for e in newest] == sorted((e["time"] for e in newest), reverse=True)
    assert newest[0]["chain"] == "b"


@pytest.mark.parametrize("limit", [0, 1])
def test_read_entries_limit(tmp_path: Path, limit: int) -> None:
    write_chain(tmp_path, 5)

    assert len(read_entries(tmp_path, limit=limit)) == limit


