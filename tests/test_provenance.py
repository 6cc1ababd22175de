"""Atomic outputs: complete or absent, with the usual permissions, and provenance records."""

import os
import stat

import pytest

from bertprune.provenance import atomic_directory, atomic_write_json, atomic_write_text, provenance, sha256_tree


def test_atomic_write_uses_umask_permissions(tmp_path):
    path = tmp_path / "out" / "metrics.json"
    atomic_write_json(path, {"value": 1})
    expected = 0o666 & ~_umask()
    assert stat.S_IMODE(path.stat().st_mode) == expected
    assert path.read_text() == '{\n  "value": 1\n}\n'


def test_atomic_write_failure_leaves_old_file(tmp_path):
    path = tmp_path / "record.json"
    atomic_write_text(path, "old")

    with pytest.raises(TypeError):
        atomic_write_json(path, {"value": object()})
    assert path.read_text() == "old"
    assert [entry.name for entry in tmp_path.iterdir()] == ["record.json"]


def test_atomic_directory_replaces_on_success(tmp_path):
    target = tmp_path / "model"
    with atomic_directory(target) as staging:
        (staging / "weights").write_text("first")
    assert stat.S_IMODE(target.stat().st_mode) == 0o777 & ~_umask()
    with atomic_directory(target) as staging:
        (staging / "weights").write_text("second")
    assert (target / "weights").read_text() == "second"


def test_atomic_directory_keeps_old_on_failure(tmp_path):
    target = tmp_path / "model"
    with atomic_directory(target) as staging:
        (staging / "weights").write_text("first")
    with pytest.raises(RuntimeError):
        with atomic_directory(target) as staging:
            (staging / "weights").write_text("half")
            raise RuntimeError("interrupted")
    assert (target / "weights").read_text() == "first"
    assert sorted(entry.name for entry in tmp_path.iterdir()) == ["model"]


def test_tree_hash_changes_with_content(tmp_path):
    (tmp_path / "a.txt").write_text("one")
    first = sha256_tree(tmp_path)
    (tmp_path / "a.txt").write_text("two")
    assert sha256_tree(tmp_path) != first


def test_provenance_fields():
    record = provenance({"data": "abc"})
    assert record["inputs_sha256"] == {"data": "abc"}
    assert record["libraries"]["torch"].startswith("2.13.0")
    assert len(record["git_commit"]) >= 40 or record["git_commit"].startswith("unknown")


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask
