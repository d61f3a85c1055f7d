"""Pre-flight Hub checks against the fake Hub: token, write access, gated base models.

Also checks that the fake rejects what the real Hub rejects, through the official client.
"""

from __future__ import annotations

import pytest
from fake_hub import FakeHub, fake_hub  # noqa: F401 - fixture
from huggingface_hub import HfApi
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from pydantic import SecretStr

from tuneship.errors import ConfigError, PublishError
from tuneship.hub.ids import is_hub_id
from tuneship.hub.preflight import check_hub_access

GATED = "meta-test/gated-llama"


@pytest.fixture
def hub(fake_hub: FakeHub) -> FakeHub:  # noqa: F811 - the imported fixture
    fake_hub.add_repo(GATED, {"config.json": b"{}"}, gated="manual", gated_access={"alice"})
    fake_hub.add_repo("acme/public-base", {"config.json": b"{}"})
    return fake_hub


def _check(hub: FakeHub, token: str | None, repo_id: str | None, base: str | None = None, **kw):  # type: ignore[no-untyped-def]
    return check_hub_access(SecretStr(token) if token else None, hub.endpoint, repo_id, base, **kw)


# --------------------------------------------------------------- the fake itself
def test_fake_hub_rejects_what_the_hub_rejects(hub: FakeHub) -> None:
    alice = hub.add_token("alice", orgs={"acme": "write"})
    bob = hub.add_token("bob")
    api = HfApi(endpoint=hub.endpoint, token=alice)
    api.create_repo("alice/private", private=True)
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("acme/does-not-exist")
    with pytest.raises(RevisionNotFoundError):
        api.model_info("acme/public-base", revision="no-such-branch")
    with pytest.raises(HfHubHTTPError) as bad:
        HfApi(endpoint=hub.endpoint, token="hf_NotAValidToken123456").model_info("acme/public-base")
    assert bad.value.response.status_code == 401
    # Private repos look missing to others, with or without a token (401 without one).
    with pytest.raises(RepositoryNotFoundError) as anon:
        HfApi(endpoint=hub.endpoint, token=False).model_info("alice/private")
    assert anon.value.response.status_code == 401
    with pytest.raises(RepositoryNotFoundError):
        HfApi(endpoint=hub.endpoint, token=bob).model_info("alice/private")
    with pytest.raises(GatedRepoError):
        HfApi(endpoint=hub.endpoint, token=bob).auth_check(GATED)
    with pytest.raises(HfHubHTTPError) as forbidden:
        HfApi(endpoint=hub.endpoint, token=bob).create_repo("acme/new")
    assert forbidden.value.response.status_code == 403
    assert HfApi(endpoint=hub.endpoint, token=alice).auth_check(GATED) is None


# ------------------------------------------------------------------ pre-flight
def test_valid_write_token_for_own_and_org_namespace(hub: FakeHub) -> None:
    token = hub.add_token("alice", orgs={"acme": "write", "other": "admin"})
    access = _check(hub, token, "alice/model", GATED)
    assert access.user == "alice" and access.token_role == "write"
    assert access.base_model == GATED
    assert _check(hub, token, "acme/model").write_namespace == "acme"
    assert _check(hub, token, "other/model").user == "alice"


def test_bad_token_fails_without_leaking_it(hub: FakeHub) -> None:
    bad = "hf_RevokedToken0123456789abcdefghij"
    with pytest.raises(PublishError) as err:
        _check(hub, bad, "alice/model", token_source="block 'hf-prod'")
    message = str(err.value)
    assert bad not in message
    assert "block 'hf-prod'" in message and "HTTP 401" in message
    assert f"{hub.endpoint}/settings/tokens" in message
    # Without publishing, a bad token is a configuration problem.
    with pytest.raises(ConfigError):
        _check(hub, bad, None, GATED)
    assert not hub.requests_matching("POST", "/")  # nothing was created or uploaded


def test_missing_token_when_publishing_is_a_config_error(hub: FakeHub) -> None:
    with pytest.raises(ConfigError, match=r"hf_credentials_block.*HF_TOKEN"):
        _check(hub, None, "alice/model")


def test_read_only_token_cannot_publish(hub: FakeHub) -> None:
    token = hub.add_token("alice", role="read")
    with pytest.raises(PublishError, match="read-only token") as err:
        _check(hub, token, "alice/model")
    assert token not in str(err.value)


def test_namespace_without_write_role(hub: FakeHub) -> None:
    token = hub.add_token("alice", orgs={"readers": "read", "acme": "write"})
    with pytest.raises(PublishError, match=r"role 'read' in 'readers'.*alice, acme"):
        _check(hub, token, "readers/model")
    with pytest.raises(PublishError, match=r"not a member of 'strangers'.*\(alice, acme\)"):
        _check(hub, token, "strangers/model")


def test_fine_grained_token_needs_repo_write_on_the_namespace(hub: FakeHub) -> None:
    scoped = hub.add_token(
        "alice",
        role="fineGrained",
        orgs={"acme": "write"},
        scoped={"alice": ["repo.content.read", "repo.write"], "acme": ["repo.content.read"]},
    )
    assert _check(hub, scoped, "alice/model").token_role == "fineGrained"
    with pytest.raises(PublishError, match=r"without 'repo\.write' on 'acme'"):
        _check(hub, scoped, "acme/model")


def test_existing_repo_write_access_is_confirmed_with_the_hub(hub: FakeHub) -> None:
    owner = hub.add_token("alice")
    HfApi(endpoint=hub.endpoint, token=owner).create_repo("alice/existing")
    assert _check(hub, owner, "alice/existing").user == "alice"


def test_gated_base_model_says_accept_the_licence(hub: FakeHub) -> None:
    bob = hub.add_token("bob")
    with pytest.raises(ConfigError) as err:
        _check(hub, bob, "bob/model", GATED)
    message = str(err.value)
    assert f"accept the licence at {hub.endpoint}/{GATED}" in message
    assert "use a token that has access" in message
    assert bob not in message
    with pytest.raises(ConfigError, match="accept the licence"):
        _check(hub, None, None, GATED)
    # Everything failed before any write reached the Hub.
    assert not hub.requests_matching("POST", "/")


def test_missing_base_model_and_revision(hub: FakeHub) -> None:
    token = hub.add_token("alice")
    with pytest.raises(ConfigError, match="neither a local folder nor a model"):
        _check(hub, token, None, "acme/no-such-model")
    with pytest.raises(ConfigError, match=r"model\.revision='v9'"):
        _check(hub, token, None, "acme/public-base", base_revision="v9")
    assert _check(hub, None, None, "acme/public-base").base_model == "acme/public-base"


def test_is_hub_id(tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert is_hub_id("meta-llama/Llama-3.1-8B")
    assert is_hub_id("gpt2")
    assert not is_hub_id("tuneship-demo://tiny-llama")
    assert not is_hub_id(str(tmp_path))
    assert not is_hub_id("./models/x")
    assert not is_hub_id("a/b/c")
