"""HubPublisher against the fake Hub: round trip, no empty commits, retries, batches, errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fake_hub import FakeHub, fake_hub  # noqa: F401 - fixture
from huggingface_hub import snapshot_download
from pydantic import SecretStr

from tuneship.errors import PublishError, TransientError
from tuneship.hub.preflight import check_hub_access
from tuneship.publishing.base import Publisher, PublishResult
from tuneship.publishing.hub import HubPublisher, folder_files, plan_batches


class FakeSleep:
    """Records retry delays instead of sleeping."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
def alice(fake_hub: FakeHub) -> SecretStr:  # noqa: F811 - the imported fixture
    return SecretStr(fake_hub.add_token("alice", orgs={"acme": "write"}))


def _publisher(hub: FakeHub, token: SecretStr, **kwargs) -> tuple[HubPublisher, FakeSleep]:  # type: ignore[no-untyped-def]
    sleep = FakeSleep()
    return HubPublisher(token, hub.endpoint, sleep=sleep, base_delay_s=0.5, **kwargs), sleep


@pytest.mark.slow
def test_publish_download_load_generate_and_republish(
    fake_hub: FakeHub,  # noqa: F811
    alice: SecretStr,
    tiny_model_dir: Path,
    tmp_path: Path,
) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    publisher, _ = _publisher(fake_hub, alice)
    typed: Publisher = publisher  # HubPublisher satisfies the Publisher protocol (mypy)
    assert typed.target == "hub"
    first = publisher.publish(tiny_model_dir, "acme/tiny", commit_message="tuneship run demo-1")
    assert isinstance(first, PublishResult)
    assert first.target == "hub" and first.created_new_revision
    assert first.revision == fake_hub.head("acme/tiny")
    assert first.url == f"{fake_hub.endpoint}/acme/tiny"
    assert fake_hub.repos["acme/tiny"].private  # private unless configured
    assert fake_hub.commits("acme/tiny")[0].title == "tuneship run demo-1"
    assert alice.get_secret_value() not in repr(publisher)

    local = snapshot_download(
        "acme/tiny",
        revision=first.revision,
        endpoint=fake_hub.endpoint,
        token=alice.get_secret_value(),
        cache_dir=tmp_path / "cache",
    )
    model = AutoModelForCausalLM.from_pretrained(local)
    tokenizer = AutoTokenizer.from_pretrained(local)
    original = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    for (name, tensor), (_, ref) in zip(
        model.state_dict().items(), original.state_dict().items(), strict=True
    ):
        assert torch.equal(tensor, ref), name
    inputs = tokenizer("hello", return_tensors="pt")
    out = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert out.shape[1] > inputs["input_ids"].shape[1]

    # Same folder again: same revision, no new commit, no bytes re-sent.
    commits = len(fake_hub.commits("acme/tiny"))
    uploads = len(fake_hub.lfs_uploads)
    again = publisher.publish(tiny_model_dir, "acme/tiny", commit_message="tuneship run demo-2")
    assert again.revision == first.revision
    assert not again.created_new_revision
    assert len(fake_hub.commits("acme/tiny")) == commits
    assert len(fake_hub.lfs_uploads) == uploads
    assert not fake_hub.requests_matching("POST", "/commit/main")[1:]


def test_changed_folder_makes_one_commit_and_mirrors_deletions(
    fake_hub: FakeHub,  # noqa: F811
    alice: SecretStr,
    tmp_path: Path,
) -> None:
    folder = tmp_path / "pkg"
    folder.mkdir()
    (folder / "config.json").write_text('{"a": 1}')
    (folder / "stale.txt").write_text("old")
    publisher, _ = _publisher(fake_hub, alice, private=False)
    first = publisher.publish(folder, "alice/m", commit_message="run 1")
    assert not fake_hub.repos["alice/m"].private
    (folder / "stale.txt").unlink()
    (folder / "config.json").write_text('{"a": 2}')
    second = publisher.publish(folder, "alice/m", commit_message="run 2")
    assert second.created_new_revision and second.revision != first.revision
    files = fake_hub.files("alice/m", second.revision)
    assert set(files) == {".gitattributes", "config.json"}
    assert files["config.json"] == b'{"a": 2}'
    assert [c.title for c in fake_hub.commits("alice/m")][:2] == ["run 2", "run 1"]


def test_branch_and_tags(fake_hub: FakeHub, alice: SecretStr, tmp_path: Path) -> None:  # noqa: F811
    folder = tmp_path / "pkg"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    publisher, _ = _publisher(fake_hub, alice, branch="release", tags=("v1", "latest"))
    result = publisher.publish(folder, "acme/m", commit_message="run 1")
    repo = fake_hub.repos["acme/m"]
    assert repo.branches["release"] == result.revision != repo.branches["main"]
    assert repo.tags == {"v1": result.revision, "latest": result.revision}
    assert result.url == f"{fake_hub.endpoint}/acme/m/tree/release"
    (folder / "config.json").write_text('{"x": 1}')
    moved = _publisher(fake_hub, alice, branch="release", tags=("latest",))[0].publish(
        folder, "acme/m", commit_message="run 2"
    )
    assert repo.tags == {"v1": result.revision, "latest": moved.revision}


def test_retries_on_rate_limits_and_server_errors(
    fake_hub: FakeHub,  # noqa: F811
    alice: SecretStr,
    tmp_path: Path,
) -> None:
    folder = tmp_path / "pkg"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    fake_hub.fail_next("POST", "/api/repos/create", 429, retry_after=3)
    fake_hub.fail_next("POST", "/commit/", 503, times=2)
    publisher, sleep = _publisher(fake_hub, alice)
    result = publisher.publish(folder, "alice/m", commit_message="run")
    assert result.created_new_revision
    assert len(sleep.delays) == 3
    assert sleep.delays[0] >= 3  # Retry-After wins over the shorter backoff
    assert 0.5 <= sleep.delays[1] < sleep.delays[2]  # exponential backoff


def test_gives_up_with_transient_error(fake_hub: FakeHub, alice: SecretStr, tmp_path: Path) -> None:  # noqa: F811
    folder = tmp_path / "pkg"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    fake_hub.fail_next("POST", "/commit/", 502, times=10)
    publisher, sleep = _publisher(fake_hub, alice, attempts=3)
    with pytest.raises(TransientError, match="failed after 3 attempts"):
        publisher.publish(folder, "alice/m", commit_message="run")
    assert len(sleep.delays) == 2


def test_errors_are_not_retried_and_never_contain_the_token(
    fake_hub: FakeHub,  # noqa: F811
    tmp_path: Path,
) -> None:
    folder = tmp_path / "pkg"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    reader = SecretStr(fake_hub.add_token("bob", role="read"))
    publisher, sleep = _publisher(fake_hub, reader)
    with pytest.raises(PublishError) as err:
        publisher.publish(folder, "bob/m", commit_message="run")
    assert "write access" in str(err.value)
    assert reader.get_secret_value() not in str(err.value)
    assert err.value.__suppress_context__  # the HTTP error (with its request) is not chained
    assert sleep.delays == []

    bad = SecretStr("hf_NotARealToken0123456789abcdefgh")
    with pytest.raises(PublishError) as err:
        _publisher(fake_hub, bad)[0].publish(folder, "bob/m", commit_message="run")
    assert "invalid or expired" in str(err.value)
    assert bad.get_secret_value() not in str(err.value)

    with pytest.raises(PublishError, match="nothing to publish"):
        publisher.publish(tmp_path / "missing", "bob/m", commit_message="run")


def test_preflight_stops_bad_setups_before_any_upload(
    fake_hub: FakeHub,  # noqa: F811
    tiny_model_dir: Path,
) -> None:
    fake_hub.add_repo("meta-test/gated", {"config.json": b"{}"}, gated="manual")
    writer = SecretStr(fake_hub.add_token("carol", orgs={"acme": "read"}))
    cases = [
        (SecretStr("hf_BadToken0123456789abcdefghijk"), "carol/m", None, PublishError),
        (writer, "acme/m", None, PublishError),
        (writer, "carol/m", "meta-test/gated", Exception),
    ]
    for token, repo_id, base, error in cases:
        with pytest.raises(error):
            check_hub_access(token, fake_hub.endpoint, repo_id, base)
    assert not fake_hub.requests_matching("POST", "/preupload/")
    assert not fake_hub.requests_matching("POST", "/commit/")
    assert not fake_hub.lfs_uploads


def test_large_folder_is_committed_in_resumable_batches(
    fake_hub: FakeHub,  # noqa: F811
    alice: SecretStr,
    tmp_path: Path,
) -> None:
    folder = tmp_path / "big"
    folder.mkdir()
    for i in range(4):
        (folder / f"model-{i:05d}-of-00004.safetensors").write_bytes(bytes([i]) * 3000)
    (folder / "config.json").write_text("{}")
    (folder / ".git").mkdir()
    (folder / ".git" / "HEAD").write_text("ref: refs/heads/main")
    assert [len(b) for b in plan_batches(folder_files(folder), max_bytes=6000)] == [2, 2, 1]

    # The second batch's commit keeps failing: the first batch is committed, then we give up.
    publisher, _ = _publisher(
        fake_hub, alice, large_folder_bytes=1000, batch_bytes=6000, attempts=2
    )
    calls = {"n": 0}
    original = publisher.api.create_commit

    def flaky_commit(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 2:
            fake_hub.fail_next("POST", "/commit/", 503, times=5)
        return original(*args, **kwargs)

    publisher.api.create_commit = flaky_commit  # type: ignore[method-assign]
    with pytest.raises(TransientError):
        publisher.publish(folder, "alice/big", commit_message="run big")
    fake_hub.failures.clear()
    committed = set(fake_hub.files("alice/big"))
    assert len(committed) == 3  # .gitattributes + the first batch (config.json, shard 0)
    uploaded_before = list(fake_hub.lfs_uploads)

    # Re-running resumes: nothing already on the Hub is sent again.
    publisher.api.create_commit = original  # type: ignore[method-assign]
    result = publisher.publish(folder, "alice/big", commit_message="run big")
    files = fake_hub.files("alice/big", result.revision)
    assert set(files) == {
        ".gitattributes",
        "config.json",
        *(f"model-{i:05d}-of-00004.safetensors" for i in range(4)),
    }
    resent = [oid for oid in fake_hub.lfs_uploads[len(uploaded_before) :] if oid in uploaded_before]
    assert resent == []
    titles = [c.title for c in fake_hub.commits("alice/big")]
    assert "run big (part 3/3)" in titles and "run big (part 1/3)" in titles
    # And once complete, publishing again is a no-op.
    assert not publisher.publish(folder, "alice/big", commit_message="x").created_new_revision


def test_large_folder_threshold_uses_single_commit_when_small(
    fake_hub: FakeHub,  # noqa: F811
    alice: SecretStr,
    tmp_path: Path,
) -> None:
    folder = tmp_path / "pkg"
    folder.mkdir()
    (folder / "a.safetensors").write_bytes(b"x" * 100)
    (folder / "b.json").write_text("{}")
    _publisher(fake_hub, alice)[0].publish(folder, "alice/small", commit_message="one")
    assert [c.title for c in fake_hub.commits("alice/small")] == ["one", "initial commit"]


def test_publishes_a_copy_after_the_machine_is_gone(
    fake_hub: FakeHub,  # noqa: F811
    alice: SecretStr,
    tiny_model_copy: Path,
) -> None:
    """Re-publishing from a fresh copy of the same content is still a no-op."""
    publisher, _ = _publisher(fake_hub, alice)
    first = publisher.publish(tiny_model_copy, "alice/t", commit_message="run")
    clone = tiny_model_copy.parent / "clone"
    shutil.copytree(tiny_model_copy, clone)
    again = publisher.publish(clone, "alice/t", commit_message="run")
    assert again.revision == first.revision and not again.created_new_revision
