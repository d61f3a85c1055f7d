"""The local, Hub-like model store: content revisions, idempotence, resolve, errors."""

from __future__ import annotations

import filecmp
import shutil
from pathlib import Path

import pytest

from tuneship.errors import PublishError
from tuneship.publishing.base import Publisher
from tuneship.publishing.local_store import LocalStorePublisher, content_revision


@pytest.fixture
def model_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "package"
    (folder / "sub").mkdir(parents=True)
    (folder / "config.json").write_text('{"model_type": "llama"}')
    (folder / "model.safetensors").write_bytes(bytes(range(256)) * 64)
    (folder / "sub" / "notes.txt").write_text("hello")
    return folder


def _same_tree(a: Path, b: Path) -> bool:
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    return files_a == files_b and all(filecmp.cmp(a / f, b / f, shallow=False) for f in files_a)


def test_publish_lays_out_store_like_the_hub(model_folder: Path, tmp_path: Path) -> None:
    store = LocalStorePublisher(tmp_path / "store")
    publisher: Publisher = store  # satisfies the protocol

    result = publisher.publish(model_folder, "acme/tiny", commit_message="first")

    assert result.target == "local"
    assert result.created_new_revision
    assert len(result.revision) == 40
    repo = tmp_path / "store" / "acme" / "tiny"
    assert (repo / "refs" / "main").read_text().strip() == result.revision
    assert Path(result.location) == repo / "revisions" / result.revision
    assert _same_tree(model_folder, Path(result.location))
    assert store.resolve("acme/tiny") == Path(result.location)
    assert store.commit_info("acme/tiny").message == "first"
    assert not list(repo.glob(".staging-*"))


def test_same_content_creates_nothing_new(model_folder: Path, tmp_path: Path) -> None:
    store = LocalStorePublisher(tmp_path / "store")
    first = store.publish(model_folder, "acme/tiny", commit_message="one")
    # The revision depends on content only, not on where the folder lives.
    moved = shutil.copytree(model_folder, tmp_path / "elsewhere")

    again = store.publish(moved, "acme/tiny", commit_message="two")

    assert not again.created_new_revision
    assert again.revision == first.revision
    assert store.list_revisions("acme/tiny") == [first.revision]
    assert store.commit_info("acme/tiny").message == "one"


def test_changed_content_gets_a_new_revision(model_folder: Path, tmp_path: Path) -> None:
    store = LocalStorePublisher(tmp_path / "store")
    first = store.publish(model_folder, "acme/tiny", commit_message="one")
    (model_folder / "sub" / "notes.txt").write_text("changed")

    second = store.publish(model_folder, "acme/tiny", commit_message="two")

    assert second.created_new_revision
    assert second.revision != first.revision
    assert store.list_revisions("acme/tiny") == [first.revision, second.revision]
    assert store.resolve("acme/tiny") == Path(second.location)
    assert (store.resolve("acme/tiny", first.revision) / "sub" / "notes.txt").read_text() == "hello"
    assert store.resolve("acme/tiny", second.revision[:8]) == Path(second.location)

    # Re-publishing old content moves main back without writing a revision.
    (model_folder / "sub" / "notes.txt").write_text("hello")
    third = store.publish(model_folder, "acme/tiny", commit_message="three")
    assert not third.created_new_revision
    assert third.revision == first.revision
    assert store.resolve("acme/tiny") == Path(first.location)


def test_renaming_a_file_changes_the_revision(model_folder: Path) -> None:
    before = content_revision(model_folder)
    (model_folder / "sub" / "notes.txt").rename(model_folder / "sub" / "other.txt")
    assert content_revision(model_folder) != before


def test_unknown_repo_and_revision_are_helpful(model_folder: Path, tmp_path: Path) -> None:
    store = LocalStorePublisher(tmp_path / "store")
    with pytest.raises(PublishError, match="store is empty"):
        store.resolve("acme/tiny")
    result = store.publish(model_folder, "acme/tiny", commit_message="one")

    with pytest.raises(PublishError, match=r"'acme/other' is not in the local store .*acme/tiny"):
        store.list_revisions("acme/other")
    with pytest.raises(PublishError) as caught:
        store.resolve("acme/tiny", "deadbeef")
    assert "not found" in str(caught.value)
    assert result.revision in str(caught.value)


def test_publish_rejects_bad_input(model_folder: Path, tmp_path: Path) -> None:
    store = LocalStorePublisher(tmp_path / "store")
    with pytest.raises(PublishError, match="invalid repo id"):
        store.publish(model_folder, "../escape", commit_message="x")
    with pytest.raises(PublishError, match="folder not found"):
        store.publish(tmp_path / "missing", "acme/tiny", commit_message="x")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(PublishError, match="holds no files"):
        store.publish(empty, "acme/tiny", commit_message="x")
