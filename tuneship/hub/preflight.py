"""Fail before paying: check Hub credentials and access before any training starts.

A run that publishes to the Hub, or that fine-tunes a gated base model, checks here that
the token is valid (``whoami``), that it may write to the target namespace, and that the base
model's files are readable with it. Each failure is an error whose message says what to do;
no message ever contains the token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from huggingface_hub import HfApi
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from pydantic import SecretStr

from tuneship.errors import ConfigError, PublishError, http_status
from tuneship.hub.client import (
    call_with_retries,
    describe_error,
    make_api,
    resolve_endpoint,
)
from tuneship.hub.ids import is_hub_id
from tuneship.secrets import mask_secrets

WRITE_ORG_ROLES = frozenset({"admin", "write", "contributor"})
NON_HUB_PREFIXES = ("tuneship-demo://", "/", "./", "../", "~")


@dataclass(frozen=True)
class HubAccess:
    """What the pre-flight checks found (small; safe to log, holds no secret)."""

    user: str | None
    token_role: str | None
    write_namespace: str | None
    base_model: str | None


def check_hub_access(
    token: SecretStr | None,
    endpoint: str | None,
    repo_id: str | None,
    base_model: str | None = None,
    *,
    base_revision: str | None = None,
    token_source: str = "the Hugging Face token",
    api: HfApi | None = None,
) -> HubAccess:
    """Check the token, write access to ``repo_id``'s namespace and the base model.

    Args:
        token: The access token (None: anonymous, only allowed when nothing is published).
        endpoint: Hub endpoint (default: ``$HF_ENDPOINT`` or https://huggingface.co).
        repo_id: Target repo (``namespace/name``) when publishing to the Hub, else None.
        base_model: The configured base model; checked only when it is a Hub id.
        base_revision: The base model revision to check exists, if set.
        token_source: Where the token came from, for messages (e.g. "block 'hf-prod'").
        api: An ``HfApi`` to use instead of building one.

    Returns:
        What was checked.

    Raises:
        ConfigError: No token although one is needed, or the base model is gated, missing or
            at an unknown revision.
        PublishError: The token is invalid, read-only, or may not write to the namespace.
        TransientError: The Hub kept answering 429/5xx.
    """
    base = resolve_endpoint(endpoint)
    client = api or make_api(token, base)
    if repo_id is not None and token is None:
        raise ConfigError(
            f"publish.target is 'hub' (repo {repo_id}) but no Hugging Face token is configured: "
            "set publish.hf_credentials_block to a HuggingFaceCredentials block, or export HF_TOKEN"
        )
    identity: dict[str, Any] | None = None
    if token is not None:
        identity = _whoami(client, token, base, token_source, publishing=repo_id is not None)
    role = _token_role(identity)
    if repo_id is not None and identity is not None:
        _check_write_access(client, token, base, repo_id, identity, role, token_source)
    hub_base = None
    if base_model and is_hub_id(base_model):
        _check_base_model(client, token, base, base_model, base_revision, token_source)
        hub_base = base_model
    return HubAccess(
        user=str(identity["name"]) if identity else None,
        token_role=role,
        write_namespace=repo_id.split("/")[0] if repo_id else None,
        base_model=hub_base,
    )


def _whoami(
    api: HfApi, token: SecretStr, base: str, source: str, *, publishing: bool
) -> dict[str, Any]:
    try:
        return call_with_retries(
            lambda: api.whoami(token=token.get_secret_value()),
            what=f"checking {source} with {base}/api/whoami-v2",
            token=token,
        )
    except HfHubHTTPError as exc:
        if http_status(exc) == 401:
            error = PublishError if publishing else ConfigError
            raise error(
                f"{source} was rejected by {base} (HTTP 401): it is invalid, expired or revoked. "
                f"Create a token at {base}/settings/tokens and update {source}"
            ) from None
        raise PublishError(
            mask_secrets(f"checking {source} with {base}: {describe_error(exc)}", token)
        ) from None


def _token_role(identity: dict[str, Any] | None) -> str | None:
    if not identity:
        return None
    auth = identity.get("auth") or {}
    role = (auth.get("accessToken") or {}).get("role")
    return str(role) if role else None


def _fine_grained_can_write(identity: dict[str, Any], namespace: str) -> bool | None:
    """True/False from a fine-grained token's scopes; None when they cannot be read."""
    access = (identity.get("auth") or {}).get("accessToken") or {}
    scopes = access.get("fineGrained")
    if not isinstance(scopes, dict):
        return None
    for scoped in scopes.get("scoped") or []:
        entity = scoped.get("entity") or {}
        if entity.get("name") == namespace:
            return "repo.write" in (scoped.get("permissions") or [])
    return False


def _check_write_access(
    api: HfApi,
    token: SecretStr | None,
    base: str,
    repo_id: str,
    identity: dict[str, Any],
    role: str | None,
    source: str,
) -> None:
    namespace = repo_id.split("/")[0]
    user = str(identity.get("name"))
    orgs = {str(o.get("name")): str(o.get("roleInOrg") or "") for o in identity.get("orgs") or []}
    writable = [user, *sorted(o for o, r in orgs.items() if r in WRITE_ORG_ROLES)]
    where = f"publish.repo_id={repo_id!r}"
    if role == "read":
        raise PublishError(
            f"{source} (user {user}) is a read-only token, so it cannot publish {where}. "
            f"Create a token with the 'write' role at {base}/settings/tokens"
        )
    if namespace != user:
        if namespace not in orgs:
            raise PublishError(
                f"user {user} is not a member of {namespace!r}, so {source} cannot publish "
                f"{where}. Use a namespace you can write to ({', '.join(writable)}) or ask an "
                f"admin of {namespace} to add {user} with the write role"
            )
        if orgs[namespace] not in WRITE_ORG_ROLES:
            raise PublishError(
                f"user {user} has the role {orgs[namespace]!r} in {namespace!r}, which cannot "
                f"create or push to repos ({where}). Ask an admin for the write role, or use "
                f"one of: {', '.join(writable)}"
            )
    if role == "fineGrained" and _fine_grained_can_write(identity, namespace) is False:
        raise PublishError(
            f"{source} is a fine-grained token without 'repo.write' on {namespace!r} ({where}). "
            f"Edit the token's permissions at {base}/settings/tokens"
        )
    # The repo may already exist with its own permissions: ask the Hub (404: not yet created).
    try:
        call_with_retries(
            lambda: api.auth_check(repo_id, write=True),
            what=f"checking write access to {repo_id}",
            token=token,
        )
    except RepositoryNotFoundError:
        return
    except HfHubHTTPError as exc:
        if http_status(exc) in (401, 403):
            raise PublishError(
                f"{source} (user {user}) may not write to the existing repo {repo_id} "
                f"({describe_error(exc, token)}). Use a token with write access to it"
            ) from None
        if http_status(exc) == 404:
            return
        raise PublishError(
            mask_secrets(f"checking write access to {repo_id}: {describe_error(exc)}", token)
        ) from None


def _check_base_model(
    api: HfApi,
    token: SecretStr | None,
    base: str,
    model_id: str,
    revision: str | None,
    source: str,
) -> None:
    page = f"{base}/{model_id}"
    auth_hint = (
        f"use a token that has access ({source})"
        if token is not None
        else "set HF_TOKEN or publish.hf_credentials_block to a token that has access"
    )
    try:
        call_with_retries(
            lambda: api.auth_check(model_id), what=f"checking access to {model_id}", token=token
        )
        if revision:
            call_with_retries(
                lambda: api.model_info(model_id, revision=revision),
                what=f"checking revision {revision} of {model_id}",
                token=token,
            )
    except GatedRepoError:
        raise ConfigError(
            f"model.base={model_id!r} is a gated model and this token has no access: accept "
            f"the licence at {page} and {auth_hint}"
        ) from None
    except RevisionNotFoundError:
        raise ConfigError(
            f"model.revision={revision!r} does not exist in {model_id} (see {page}/tree)"
        ) from None
    except RepositoryNotFoundError:
        raise ConfigError(
            f"model.base={model_id!r} is neither a local folder nor a model on {base} that this "
            f"token can see (it may be private: {auth_hint})"
        ) from None
    except HfHubHTTPError as exc:
        if http_status(exc) in (401, 403):
            raise ConfigError(
                f"model.base={model_id!r}: access denied ({describe_error(exc, token)}). If it is "
                f"gated, accept the licence at {page} and {auth_hint}"
            ) from None
        raise ConfigError(
            mask_secrets(f"model.base={model_id!r}: {describe_error(exc)}", token)
        ) from None
