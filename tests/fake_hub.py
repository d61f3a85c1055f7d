"""A fake Hugging Face Hub on 127.0.0.1 that speaks the REST API huggingface_hub 2.4.0 uses.

Only model repos are implemented. The endpoints are the ones the official client calls for
``whoami``, ``create_repo``, ``upload_folder``/``create_commit`` (legacy LFS path, so tests
set ``HF_HUB_DISABLE_XET=1``), ``create_branch``/``create_tag``/``list_repo_refs``,
``list_repo_commits``, ``list_repo_tree``, ``auth_check`` and ``snapshot_download``/
``hf_hub_download``. The endpoint list and response shapes come from reading
huggingface_hub 2.4.0 (``hf_api.py``, ``_commit_api.py``, ``lfs.py``, ``file_download.py``)
and from the project's offline-testing notes.

Errors follow what the real Hub sends and what ``huggingface_hub.utils.hf_raise_for_status``
maps to exceptions: ``X-Error-Code: RepoNotFound`` (404, or 401 without a token),
``RevisionNotFound`` (404), ``EntryNotFound`` (404), ``GatedRepo`` (403, or 401 without a
token), ``X-Error-Message: Invalid credentials in Authorization header`` for a bad token
(401), and 403 for writes a token may not make. A commit always creates a new revision,
like the real Hub, so a client that sends an unchanged folder makes an (empty) commit: the
tests use that to prove the publisher does not.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import string
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

LFS_SUFFIXES = (
    ".safetensors",
    ".bin",
    ".pt",
    ".pth",
    ".pkl",
    ".npy",
    ".npz",
    ".h5",
    ".onnx",
    ".gguf",
)
LFS_MIN_SIZE = 10 * 1024 * 1024
WRITE_ORG_ROLES = {"admin", "write", "contributor"}
GITATTRIBUTES = (
    b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"
    b"*.bin filter=lfs diff=lfs merge=lfs -text\n"
)


def git_blob_sha1(content: bytes) -> str:
    """Git's blob id of ``content`` (what the Hub reports as a regular file's oid)."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The git-lfs pointer file stored in git for an LFS object."""
    return (
        f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()
    )


def make_token(prefix: str = "hf_") -> str:
    """A random token shaped like a real Hub user access token."""
    alphabet = string.ascii_letters + string.digits
    return prefix + "".join(secrets.choice(alphabet) for _ in range(34))


@dataclass
class FileEntry:
    """One file in a commit's tree."""

    size: int
    blob_id: str
    sha256: str | None  # set for LFS files
    content: bytes

    @property
    def is_lfs(self) -> bool:
        return self.sha256 is not None


@dataclass
class Commit:
    """A commit: a full snapshot of the repo's files."""

    oid: str
    parent: str | None
    title: str
    message: str
    files: dict[str, FileEntry]
    date: str
    author: str


@dataclass
class Repo:
    """A model repo."""

    repo_id: str
    private: bool
    gated: str | bool = False
    gated_access: set[str] = field(default_factory=set)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)

    @property
    def namespace(self) -> str:
        return self.repo_id.split("/")[0]


@dataclass
class TokenInfo:
    """Who a token belongs to and what it may do."""

    user: str
    role: str  # "read", "write" or "fineGrained"
    orgs: dict[str, str]  # org name -> roleInOrg
    scoped: dict[str, list[str]] | None = None  # fine-grained: namespace -> permissions


@dataclass
class Failure:
    """An injected failure for the next matching requests."""

    method: str
    path_contains: str
    status: int
    times: int
    retry_after: int | None


class HubError(Exception):
    """Raised inside a handler to send an error response."""

    def __init__(
        self, status: int, message: str, code: str | None = None, header_message: bool = True
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.header_message = header_message


class FakeHub:
    """In-memory Hub state plus a ThreadingHTTPServer serving it on 127.0.0.1.

    Attributes:
        endpoint: Base URL to give ``HfApi(endpoint=...)``.
        requests: ``(method, path)`` of every request served, in order.
        lfs_uploads: sha256 of every LFS object uploaded (one entry per PUT).
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.tokens: dict[str, TokenInfo] = {}
        self.repos: dict[str, Repo] = {}
        self.lfs_store: dict[str, bytes] = {}
        self.requests: list[tuple[str, str]] = []
        self.lfs_uploads: list[str] = []
        self.failures: list[Failure] = []
        self._counter = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.endpoint = ""

    # ----------------------------------------------------------------- lifecycle
    def start(self) -> FakeHub:
        """Start serving on a free port of 127.0.0.1."""
        hub = self

        class Handler(_Handler):
            fake = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        port = self._server.server_address[1]
        self.endpoint = f"http://127.0.0.1:{port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the server."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # ------------------------------------------------------------ test helpers
    def add_token(
        self,
        user: str,
        *,
        role: str = "write",
        orgs: dict[str, str] | None = None,
        scoped: dict[str, list[str]] | None = None,
        token: str | None = None,
    ) -> str:
        """Register a token for ``user`` and return it.

        Args:
            user: User name (their own namespace).
            role: Token role: "read", "write" or "fineGrained".
            orgs: Organisations the user belongs to, with their ``roleInOrg``.
            scoped: For fine-grained tokens, permissions per namespace
                (e.g. ``{"alice": ["repo.content.read", "repo.write"]}``).
            token: The token value; a random ``hf_...`` token when omitted.
        """
        value = token or make_token()
        with self._lock:
            self.tokens[value] = TokenInfo(
                user=user, role=role, orgs=dict(orgs or {}), scoped=scoped
            )
        return value

    def add_repo(
        self,
        repo_id: str,
        files: dict[str, bytes] | None = None,
        *,
        private: bool = False,
        gated: str | bool = False,
        gated_access: set[str] | None = None,
    ) -> Repo:
        """Create a repo directly (no auth), with an initial commit holding ``files``."""
        with self._lock:
            repo = self._create_repo(repo_id, private=private, author="hub")
            repo.gated = gated
            repo.gated_access = set(gated_access or ())
            if files:
                entries = dict(self._head(repo, "main").files)
                for path, content in files.items():
                    entries[path] = self._make_entry(path, content)
                self._add_commit(repo, "main", entries, "Add files", "", "hub")
            return repo

    def add_folder(self, repo_id: str, folder: Path, **kwargs: Any) -> Repo:
        """Create a repo holding every file of ``folder`` (e.g. a base model)."""
        files = {
            p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*"))
            if p.is_file()
        }
        return self.add_repo(repo_id, files, **kwargs)

    def fail_next(
        self,
        method: str,
        path_contains: str,
        status: int,
        *,
        times: int = 1,
        retry_after: int | None = None,
    ) -> None:
        """Answer the next ``times`` matching requests with ``status`` (e.g. 429, 503)."""
        with self._lock:
            self.failures.append(Failure(method.upper(), path_contains, status, times, retry_after))

    def commits(self, repo_id: str, revision: str = "main") -> list[Commit]:
        """Commits reachable from ``revision``, newest first."""
        with self._lock:
            repo = self.repos[repo_id]
            oid: str | None = self._resolve(repo, revision)
            out = []
            while oid is not None:
                commit = repo.commits[oid]
                out.append(commit)
                oid = commit.parent
            return out

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        """Path -> content of every file at ``revision``."""
        with self._lock:
            repo = self.repos[repo_id]
            commit = repo.commits[self._resolve(repo, revision)]
            return {path: entry.content for path, entry in commit.files.items()}

    def head(self, repo_id: str, revision: str = "main") -> str:
        """Commit sha of ``revision``."""
        with self._lock:
            return self._resolve(self.repos[repo_id], revision)

    def requests_matching(self, method: str, path_contains: str) -> list[str]:
        """Paths of served requests with ``method`` whose path contains ``path_contains``."""
        return [p for m, p in self.requests if m == method.upper() and path_contains in p]

    # ------------------------------------------------------------------ internals
    def _next_oid(self, *parts: str) -> str:
        self._counter += 1
        return hashlib.sha1("\0".join((str(self._counter), *parts)).encode()).hexdigest()

    def _make_entry(self, path: str, content: bytes) -> FileEntry:
        if self._wants_lfs(path, len(content), content[:512]):
            sha = hashlib.sha256(content).hexdigest()
            self.lfs_store[sha] = content
            return FileEntry(
                len(content), git_blob_sha1(lfs_pointer(sha, len(content))), sha, content
            )
        return FileEntry(len(content), git_blob_sha1(content), None, content)

    @staticmethod
    def _wants_lfs(path: str, size: int, sample: bytes) -> bool:
        return path.endswith(LFS_SUFFIXES) or size >= LFS_MIN_SIZE or b"\0" in sample

    def _create_repo(self, repo_id: str, *, private: bool, author: str) -> Repo:
        repo = Repo(repo_id=repo_id, private=private)
        self.repos[repo_id] = repo
        initial = {
            ".gitattributes": FileEntry(
                len(GITATTRIBUTES), git_blob_sha1(GITATTRIBUTES), None, GITATTRIBUTES
            )
        }
        oid = self._next_oid(repo_id, "initial")
        repo.commits[oid] = Commit(oid, None, "initial commit", "", initial, _now(), author)
        repo.branches["main"] = oid
        return repo

    def _add_commit(
        self,
        repo: Repo,
        branch: str,
        files: dict[str, FileEntry],
        title: str,
        message: str,
        author: str,
    ) -> Commit:
        parent = repo.branches[branch]
        oid = self._next_oid(repo.repo_id, branch, title, parent)
        commit = Commit(oid, parent, title, message, files, _now(), author)
        repo.commits[oid] = commit
        repo.branches[branch] = oid
        return commit

    def _resolve(self, repo: Repo, revision: str) -> str:
        if revision in repo.branches:
            return repo.branches[revision]
        if revision in repo.tags:
            return repo.tags[revision]
        if revision in repo.commits:
            return revision
        matches = [oid for oid in repo.commits if len(revision) >= 7 and oid.startswith(revision)]
        if len(matches) == 1:
            return matches[0]
        raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")

    def _head(self, repo: Repo, revision: str) -> Commit:
        return repo.commits[self._resolve(repo, revision)]


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


# Dataset repos (``/api/datasets/...``, ``/datasets/<ns>/<name>/...``) share the model repos'
# store: tuneship stages a RunPod run's inputs in a private dataset repo of its own name.
_REPO_API = re.compile(r"^/api/(?:models|datasets)/(?P<ns>[^/]+)/(?P<name>[^/]+)(?P<rest>(/.*)?)$")
_LFS_BATCH = re.compile(
    r"^/(?:datasets/)?(?P<ns>[^/]+)/(?P<name>[^/]+?)\.git/info/lfs/objects/batch$"
)
_RESOLVE = re.compile(
    r"^/(?:datasets/)?(?P<ns>[^/]+)/(?P<name>[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$"
)


class _Handler(BaseHTTPRequestHandler):
    """Routes requests to the FakeHub; one instance per request."""

    fake: FakeHub
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet."""

    # ------------------------------------------------------------------ plumbing
    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(
        self,
        status: int,
        body: bytes = b"",
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
        send_body: bool = True,
        length: int | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if send_body and body:
            self.wfile.write(body)

    def _json(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
        self._send(
            status, json.dumps(data).encode(), headers=headers, send_body=self.command != "HEAD"
        )

    def _error(self, err: HubError) -> None:
        headers = {}
        if err.code:
            headers["X-Error-Code"] = err.code
        if err.header_message:
            headers["X-Error-Message"] = err.message
        self._json(err.status, {"error": err.message}, headers=headers)

    def _dispatch(self, method: str) -> None:
        body = self._read_body()
        split = urlsplit(self.path)
        path = split.path
        query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        fake = self.fake
        with fake._lock:
            fake.requests.append((method, path))
            for failure in fake.failures:
                if failure.times > 0 and failure.method == method and failure.path_contains in path:
                    failure.times -= 1
                    headers = (
                        {"Retry-After": str(failure.retry_after)} if failure.retry_after else {}
                    )
                    self._json(failure.status, {"error": f"injected {failure.status}"}, headers)
                    return
        try:
            with fake._lock:
                self._route(method, path, query, body)
        except HubError as err:
            self._error(err)

    # --------------------------------------------------------------------- auth
    def _token(self) -> TokenInfo | None:
        """The caller's token info; None when anonymous; 401 for an unknown token."""
        header = self.headers.get("Authorization")
        if not header:
            return None
        scheme, _, value = header.partition(" ")
        info = self.fake.tokens.get(value.strip()) if scheme.lower() == "bearer" else None
        if info is None:
            raise HubError(401, "Invalid credentials in Authorization header")
        return info

    @staticmethod
    def _can_write_namespace(tok: TokenInfo | None, namespace: str) -> bool:
        if tok is None or tok.role == "read":
            return False
        member = namespace == tok.user or tok.orgs.get(namespace) in WRITE_ORG_ROLES
        if tok.role == "fineGrained":
            return member and "repo.write" in (tok.scoped or {}).get(namespace, [])
        return member

    @staticmethod
    def _is_member(tok: TokenInfo | None, namespace: str) -> bool:
        return tok is not None and (namespace == tok.user or namespace in tok.orgs)

    def _repo_for_read(self, repo_id: str, tok: TokenInfo | None) -> Repo:
        repo = self.fake.repos.get(repo_id)
        if repo is None or (repo.private and not self._is_member(tok, repo.namespace)):
            if tok is None:
                raise HubError(401, "Invalid username or password.", "RepoNotFound")
            raise HubError(404, "Repository not found", "RepoNotFound")
        return repo

    def _repo_for_write(self, repo_id: str, tok: TokenInfo | None) -> Repo:
        repo = self._repo_for_read(repo_id, tok)
        if not self._can_write_namespace(tok, repo.namespace):
            raise HubError(
                403,
                f"You don't have the rights to write to {repo_id}: this token has no write "
                f"access to the namespace {repo.namespace!r}",
            )
        return repo

    def _check_gated(self, repo: Repo, tok: TokenInfo | None) -> None:
        if not repo.gated:
            return
        if tok is not None and (
            tok.user in repo.gated_access or self._is_member(tok, repo.namespace)
        ):
            return
        if tok is None:
            raise HubError(
                401,
                f"Access to model {repo.repo_id} is restricted. You must have access to it and "
                "be authenticated to access it. Please log in.",
                "GatedRepo",
            )
        raise HubError(
            403,
            f"Access to model {repo.repo_id} is restricted and you are not in the authorized "
            f"list. Visit {self.fake.endpoint}/{repo.repo_id} to ask for access.",
            "GatedRepo",
        )

    # ------------------------------------------------------------------- routes
    def _route(self, method: str, path: str, query: dict[str, str], body: bytes) -> None:
        tok = self._token()
        if path == "/api/whoami-v2" and method == "GET":
            return self._whoami(tok)
        if path == "/api/repos/create" and method == "POST":
            return self._create_repo(tok, json.loads(body or b"{}"))
        if path == "/api/repos/delete" and method == "DELETE":
            return self._delete_repo(tok, json.loads(body or b"{}"))
        if path == "/api/validate-yaml" and method == "POST":
            return self._json(200, {"errors": [], "warnings": []})
        if path.startswith("/lfs-upload/") and method == "PUT":
            return self._lfs_put(path.rsplit("/", 1)[1], body)
        if match := _LFS_BATCH.match(path):
            return self._lfs_batch(tok, f"{match['ns']}/{match['name']}", json.loads(body))
        if match := _REPO_API.match(path):
            repo_id = f"{unquote(match['ns'])}/{unquote(match['name'])}"
            parts = [unquote(p) for p in match["rest"].split("/")[1:]]
            return self._repo_api(method, tok, repo_id, parts, query, body)
        if (match := _RESOLVE.match(path)) and method in ("GET", "HEAD"):
            repo_id = f"{unquote(match['ns'])}/{unquote(match['name'])}"
            return self._resolve_file(tok, repo_id, unquote(match["rev"]), unquote(match["path"]))
        raise HubError(404, f"Sorry, we can't find the page you are looking for ({method} {path}).")

    def _repo_api(
        self,
        method: str,
        tok: TokenInfo | None,
        repo_id: str,
        parts: list[str],
        query: dict[str, str],
        body: bytes,
    ) -> None:
        head = parts[0] if parts else ""
        if method == "GET" and head in ("", "revision"):
            repo = self._repo_for_read(repo_id, tok)
            revision = parts[1] if head == "revision" and len(parts) > 1 else "main"
            return self._json(200, self._model_info(repo, revision))
        if method == "GET" and head == "auth-check":
            if parts[1:] == ["write"]:
                self._repo_for_write(repo_id, tok)
            else:
                self._check_gated(self._repo_for_read(repo_id, tok), tok)
            return self._json(200, {})
        if method == "GET" and head == "refs":
            repo = self._repo_for_read(repo_id, tok)
            return self._json(200, self._refs(repo))
        if method == "GET" and head == "commits" and len(parts) >= 2:
            repo = self._repo_for_read(repo_id, tok)
            return self._json(200, self._commit_list(repo, parts[1]))
        if method == "GET" and head == "tree" and len(parts) >= 2:
            repo = self._repo_for_read(repo_id, tok)
            sub = "/".join(parts[2:])
            return self._json(
                200,
                self._tree(
                    repo, parts[1], sub, query.get("recursive", "").lower() in ("true", "1")
                ),
            )
        if method == "POST" and head == "preupload" and len(parts) >= 2:
            repo = self._repo_for_write(repo_id, tok)
            return self._preupload(repo, parts[1], json.loads(body))
        if method == "POST" and head == "commit" and len(parts) >= 2:
            repo = self._repo_for_write(repo_id, tok)
            assert tok is not None
            return self._commit(repo, parts[1], body, tok.user)
        if head == "branch" and len(parts) >= 2:
            repo = self._repo_for_write(repo_id, tok)
            branch = "/".join(parts[1:])
            if method == "POST":
                payload = json.loads(body or b"{}")
                return self._create_branch(repo, branch, payload.get("startingPoint"))
            if method == "DELETE":
                if branch not in repo.branches or branch == "main":
                    raise HubError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
                del repo.branches[branch]
                return self._json(200, {})
        if head == "tag" and len(parts) >= 2:
            repo = self._repo_for_write(repo_id, tok)
            if method == "POST":
                payload = json.loads(body)
                return self._create_tag(repo, parts[1], payload["tag"])
            if method == "DELETE":
                if parts[1] not in repo.tags:
                    raise HubError(404, f"Invalid rev id: {parts[1]}", "RevisionNotFound")
                del repo.tags[parts[1]]
                return self._json(200, {})
        raise HubError(404, f"Sorry, we can't find the page you are looking for ({method}).")

    def _whoami(self, tok: TokenInfo | None) -> None:
        if tok is None:
            raise HubError(401, "Invalid username or password.")
        access: dict[str, Any] = {"displayName": "tuneship-test", "role": tok.role}
        if tok.role == "fineGrained":
            access["fineGrained"] = {
                "canReadGatedRepos": True,
                "global": [],
                "scoped": [
                    {
                        "entity": {
                            "_id": hashlib.md5(ns.encode()).hexdigest()[:24],
                            "type": "user" if ns == tok.user else "org",
                            "name": ns,
                        },
                        "permissions": perms,
                    }
                    for ns, perms in (tok.scoped or {}).items()
                ],
            }
        self._json(
            200,
            {
                "type": "user",
                "id": hashlib.md5(tok.user.encode()).hexdigest()[:24],
                "name": tok.user,
                "fullname": tok.user.title(),
                "isPro": False,
                "canPay": False,
                "orgs": [
                    {"type": "org", "name": org, "fullname": org, "roleInOrg": role}
                    for org, role in tok.orgs.items()
                ],
                "auth": {"type": "access_token", "accessToken": access},
            },
        )

    def _create_repo(self, tok: TokenInfo | None, payload: dict[str, Any]) -> None:
        if tok is None:
            raise HubError(401, "You must be authenticated to create a repo.")
        if payload.get("type") not in (None, "model", "dataset"):
            raise HubError(400, "The fake Hub only supports model and dataset repos.")
        namespace = payload.get("organization") or tok.user
        repo_id = f"{namespace}/{payload['name']}"
        if repo_id in self.fake.repos:
            return self._json(
                409,
                {
                    "error": "You already created this model repo",
                    "url": f"{self.fake.endpoint}/{repo_id}",
                },
            )
        if not self._can_write_namespace(tok, namespace):
            raise HubError(
                403,
                f'You don\'t have the rights to create a model under the namespace "{namespace}"',
            )
        private = payload.get("visibility", "public") == "private" or bool(payload.get("private"))
        self.fake._create_repo(repo_id, private=private, author=tok.user)
        self._json(200, {"url": f"{self.fake.endpoint}/{repo_id}", "name": repo_id})

    def _delete_repo(self, tok: TokenInfo | None, payload: dict[str, Any]) -> None:
        namespace = payload.get("organization") or (tok.user if tok else "")
        repo_id = f"{namespace}/{payload['name']}"
        self._repo_for_write(repo_id, tok)
        del self.fake.repos[repo_id]
        self._json(200, {})

    def _model_info(self, repo: Repo, revision: str) -> dict[str, Any]:
        commit = self.fake._head(repo, revision)
        return {
            "_id": hashlib.md5(repo.repo_id.encode()).hexdigest()[:24],
            "id": repo.repo_id,
            "modelId": repo.repo_id,
            "author": repo.namespace,
            "sha": commit.oid,
            "lastModified": commit.date,
            "private": repo.private,
            "gated": repo.gated,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": [{"rfilename": p} for p in sorted(commit.files)],
            "createdAt": commit.date,
        }

    def _refs(self, repo: Repo) -> dict[str, Any]:
        return {
            "branches": [
                {"name": n, "ref": f"refs/heads/{n}", "targetCommit": oid}
                for n, oid in repo.branches.items()
            ],
            "tags": [
                {"name": n, "ref": f"refs/tags/{n}", "targetCommit": oid}
                for n, oid in repo.tags.items()
            ],
            "converts": [],
        }

    def _commit_list(self, repo: Repo, revision: str) -> list[dict[str, Any]]:
        out = []
        oid: str | None = self.fake._resolve(repo, revision)
        while oid is not None:
            commit = repo.commits[oid]
            out.append(
                {
                    "id": commit.oid,
                    "title": commit.title,
                    "message": commit.message,
                    "date": commit.date,
                    "authors": [{"user": commit.author}],
                }
            )
            oid = commit.parent
        return out

    def _tree(self, repo: Repo, revision: str, sub: str, recursive: bool) -> list[dict[str, Any]]:
        commit = self.fake._head(repo, revision)
        prefix = f"{sub.strip('/')}/" if sub.strip("/") else ""
        if (
            prefix
            and not any(p.startswith(prefix) for p in commit.files)
            and sub not in commit.files
        ):
            raise HubError(404, "Entry not found", "EntryNotFound")
        items: dict[str, dict[str, Any]] = {}
        for path, entry in sorted(commit.files.items()):
            if not path.startswith(prefix):
                continue
            rel = path[len(prefix) :]
            dirs = rel.split("/")[:-1]
            for depth in range(len(dirs)):
                folder = prefix + "/".join(dirs[: depth + 1])
                if folder not in items and (recursive or depth == 0):
                    items[folder] = {
                        "type": "directory",
                        "oid": git_blob_sha1(folder.encode()),
                        "size": 0,
                        "path": folder,
                    }
            if dirs and not recursive:
                continue
            item: dict[str, Any] = {
                "type": "file",
                "oid": entry.blob_id,
                "size": entry.size,
                "path": path,
            }
            if entry.sha256 is not None:
                item["lfs"] = {
                    "oid": entry.sha256,
                    "size": entry.size,
                    "pointerSize": len(lfs_pointer(entry.sha256, entry.size)),
                }
            items[path] = item
        return list(items.values())

    def _preupload(self, repo: Repo, revision: str, payload: dict[str, Any]) -> None:
        commit = self.fake._head(repo, revision)
        files = []
        for item in payload["files"]:
            sample = base64.b64decode(item.get("sample", ""))
            lfs = self.fake._wants_lfs(item["path"], int(item["size"]), sample)
            existing = commit.files.get(item["path"])
            oid = None
            if existing is not None:
                oid = existing.sha256 if lfs else existing.blob_id
                if lfs != existing.is_lfs:
                    oid = None
            files.append(
                {
                    "path": item["path"],
                    "uploadMode": "lfs" if lfs else "regular",
                    "shouldIgnore": False,
                    "oid": oid,
                }
            )
        self._json(200, {"files": files, "commitOid": commit.oid})

    def _lfs_batch(self, tok: TokenInfo | None, repo_id: str, payload: dict[str, Any]) -> None:
        self._repo_for_write(repo_id, tok)
        objects = []
        for obj in payload["objects"]:
            entry: dict[str, Any] = {"oid": obj["oid"], "size": obj["size"]}
            if obj["oid"] not in self.fake.lfs_store:
                # No "actions" tells the client the object is already stored: that is what
                # makes a re-run of an interrupted upload skip the bytes already sent.
                entry["actions"] = {
                    "upload": {"href": f"{self.fake.endpoint}/lfs-upload/{obj['oid']}"}
                }
            objects.append(entry)
        self._send(
            200,
            json.dumps({"transfer": "basic", "objects": objects}).encode(),
            content_type="application/vnd.git-lfs+json",
        )

    def _lfs_put(self, oid: str, body: bytes) -> None:
        if hashlib.sha256(body).hexdigest() != oid:
            raise HubError(400, "sha256 of the uploaded content does not match the object id")
        self.fake.lfs_store[oid] = body
        self.fake.lfs_uploads.append(oid)
        self._send(200)

    def _commit(self, repo: Repo, revision: str, body: bytes, author: str) -> None:
        if revision not in repo.branches:
            if revision in repo.tags or revision in repo.commits:
                raise HubError(400, f"Cannot commit to {revision}: not a branch")
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        header = lines[0]["value"]
        parent = header.get("parentCommit")
        if parent and self.fake._resolve(repo, parent) != repo.branches[revision]:
            raise HubError(412, "A commit has happened since. Please refresh and try again.")
        files = dict(self.fake._head(repo, revision).files)
        for line in lines[1:]:
            key, value = line["key"], line["value"]
            if key == "file":
                content = base64.b64decode(value["content"])
                files[value["path"]] = FileEntry(
                    len(content), git_blob_sha1(content), None, content
                )
            elif key == "lfsFile":
                content = self.fake.lfs_store.get(value["oid"])
                if content is None:
                    raise HubError(
                        422, f"LFS object {value['oid']} was not uploaded for {value['path']}"
                    )
                files[value["path"]] = FileEntry(
                    len(content),
                    git_blob_sha1(lfs_pointer(value["oid"], len(content))),
                    value["oid"],
                    content,
                )
            elif key == "deletedFile":
                if value["path"] not in files:
                    raise HubError(404, "A file with this name doesn't exist", "EntryNotFound")
                del files[value["path"]]
            elif key == "deletedFolder":
                prefix = value["path"].rstrip("/") + "/"
                for path in [p for p in files if p.startswith(prefix)]:
                    del files[path]
            else:
                raise HubError(400, f"Unsupported commit operation {key!r}")
        commit = self.fake._add_commit(
            repo, revision, files, header["summary"], header.get("description", ""), author
        )
        self._json(
            200,
            {
                "success": True,
                "commitOid": commit.oid,
                "commitUrl": f"{self.fake.endpoint}/{repo.repo_id}/commit/{commit.oid}",
                "hookOutput": "",
            },
        )

    def _create_branch(self, repo: Repo, branch: str, starting_point: str | None) -> None:
        if branch in repo.branches:
            raise HubError(409, f"Reference already exists: refs/heads/{branch}")
        repo.branches[branch] = self.fake._resolve(repo, starting_point or "main")
        self._json(200, {})

    def _create_tag(self, repo: Repo, revision: str, tag: str) -> None:
        if tag in repo.tags:
            raise HubError(409, f"Tag already exists: {tag}")
        repo.tags[tag] = self.fake._resolve(repo, revision)
        self._json(200, {})

    def _resolve_file(self, tok: TokenInfo | None, repo_id: str, revision: str, path: str) -> None:
        repo = self._repo_for_read(repo_id, tok)
        self._check_gated(repo, tok)
        commit = self.fake._head(repo, revision)
        entry = commit.files.get(path)
        if entry is None:
            raise HubError(404, "Entry not found", "EntryNotFound")
        headers = {"X-Repo-Commit": commit.oid, "Accept-Ranges": "bytes"}
        if entry.sha256 is not None:
            headers["ETag"] = f'"{entry.sha256}"'
            headers["X-Linked-Etag"] = f'"{entry.sha256}"'
            headers["X-Linked-Size"] = str(entry.size)
        else:
            headers["ETag"] = f'"{entry.blob_id}"'
        content = entry.content
        status = 200
        range_header = self.headers.get("Range")
        if range_header and (m := re.match(r"bytes=(\d+)-(\d*)$", range_header)):
            start = int(m[1])
            end = int(m[2]) if m[2] else len(content) - 1
            headers["Content-Range"] = f"bytes {start}-{end}/{len(content)}"
            content = content[start : end + 1]
            status = 206
        self._send(
            status,
            content,
            content_type="application/octet-stream",
            headers=headers,
            send_body=self.command != "HEAD",
        )


@pytest.fixture
def fake_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeHub]:
    """A running FakeHub, with huggingface_hub pointed at it and Xet uploads disabled.

    Yields:
        The FakeHub (``.endpoint``, ``.add_token()``, ``.add_repo()``, state inspection).
    """
    from huggingface_hub import constants

    hub = FakeHub().start()
    cache = tmp_path / "hf-cache"
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    # conftest turns the Hub offline for every test; this one talks to 127.0.0.1 only.
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    monkeypatch.setattr(constants, "ENDPOINT", hub.endpoint)
    monkeypatch.setattr(
        constants,
        "HUGGINGFACE_CO_URL_TEMPLATE",
        hub.endpoint + "/{repo_id}/resolve/{revision}/{filename}",
    )
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    try:
        yield hub
    finally:
        hub.stop()
