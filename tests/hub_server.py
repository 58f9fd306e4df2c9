"""A local, stdlib-only, Hugging Face Hub-compatible HTTP server for offline tests.

The real ``huggingface_hub`` / ``transformers`` / ``timm`` clients talk to it unchanged: point them at it with
``HF_ENDPOINT`` (see :func:`hub_env`) and it answers the subset of the Hub API that uploads, downloads, repo info,
tree listings and model cards need. Nothing leaves 127.0.0.1.

Design
------
* Two ``ThreadingHTTPServer`` instances share one in-memory state (metadata) backed by a temp directory (content):

  - the *Hub* (``server.url``): ``/api/...`` routes, ``/{repo_id}/resolve/{revision}/{path}`` and the git-LFS batch
    endpoint ``/{repo_id}.git/info/lfs/objects/batch``;
  - the *CDN* (``server.cdn_url``, another port, hence another origin): LFS object PUT (upload) and GET (download).
    Like on the real Hub, ``/resolve`` answers LFS files with a 302 to the CDN carrying ``X-Linked-Etag`` /
    ``X-Linked-Size``; because the CDN is a different origin the client stops following redirects at the HEAD call,
    reads the metadata from the 302 and downloads from the CDN without the ``authorization`` header - the exact code
    path used against huggingface.co.

* Each repo has branches (``main`` plus any created with ``create_branch``) and tags pointing at commits; commits
  form a linear history per branch and carry a full file tree ``path -> entry``. Regular file content is stored by
  git blob sha1, LFS content by sha256 (``<root>/git/<sha1>`` and ``<root>/lfs/<sha256>``).

* The client process must have ``HF_ENDPOINT`` etc. set *before* ``huggingface_hub`` is imported, and the test
  process already imported it in offline mode (``tests/conftest.py``), so tests run client code in a subprocess whose
  environment comes from :func:`hub_env`. The server itself runs in a background thread of the test process, so
  tests can inspect :meth:`HubServer.repo_files`, :meth:`HubServer.commits` and :attr:`HubServer.requests` directly
  and flip :meth:`HubServer.set_refusing` between subprocess calls.

Only :mod:`yaml` (a dependency of both ``huggingface_hub`` and hfkd) is used besides the standard library, to parse
README front matter into ``cardData``; a minimal ``key: value`` parser is used when it is missing.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import textwrap
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

try:  # pragma: no cover - exercised implicitly
    import yaml as _yaml
except ImportError:  # pragma: no cover
    _yaml = None

DEFAULT_TOKEN = "hf_hubserver_dummy_token_0123456789"
DEFAULT_USER = "hfkd-tester"
DEFAULT_ORGS = ("hfkd-org",)

# Files at least this large are uploaded through LFS even when .gitattributes does not track them (the Hub's rule).
LFS_SIZE_THRESHOLD = 10 * 1000 * 1000

_REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
_URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
_REPO_ACTIONS = {
    "tree", "revision", "preupload", "commit", "commits", "refs", "paths-info", "branch", "tag", "resolve",
    "settings", "discussions", "lfs-files", "auth-check", "treesize",
}
_YAML_BLOCK = re.compile(r"^(\s*---(?:\r\n|\r|\n))([\S\s]*?)((?:\r\n|\r|\n)---[ \t]*(\r\n|\n|$))")
_SHA1 = re.compile(r"^[0-9a-f]{40}$")

# The .gitattributes the Hub puts in the initial commit of every new model repo (abridged, same LFS rules).
DEFAULT_GITATTRIBUTES = """\
*.7z filter=lfs diff=lfs merge=lfs -text
*.arrow filter=lfs diff=lfs merge=lfs -text
*.bin filter=lfs diff=lfs merge=lfs -text
*.bz2 filter=lfs diff=lfs merge=lfs -text
*.ckpt filter=lfs diff=lfs merge=lfs -text
*.ftz filter=lfs diff=lfs merge=lfs -text
*.gz filter=lfs diff=lfs merge=lfs -text
*.h5 filter=lfs diff=lfs merge=lfs -text
*.joblib filter=lfs diff=lfs merge=lfs -text
*.lfs.* filter=lfs diff=lfs merge=lfs -text
*.mlmodel filter=lfs diff=lfs merge=lfs -text
*.model filter=lfs diff=lfs merge=lfs -text
*.msgpack filter=lfs diff=lfs merge=lfs -text
*.npy filter=lfs diff=lfs merge=lfs -text
*.npz filter=lfs diff=lfs merge=lfs -text
*.onnx filter=lfs diff=lfs merge=lfs -text
*.ot filter=lfs diff=lfs merge=lfs -text
*.parquet filter=lfs diff=lfs merge=lfs -text
*.pb filter=lfs diff=lfs merge=lfs -text
*.pickle filter=lfs diff=lfs merge=lfs -text
*.pkl filter=lfs diff=lfs merge=lfs -text
*.pt filter=lfs diff=lfs merge=lfs -text
*.pth filter=lfs diff=lfs merge=lfs -text
*.rar filter=lfs diff=lfs merge=lfs -text
*.safetensors filter=lfs diff=lfs merge=lfs -text
saved_model/**/* filter=lfs diff=lfs merge=lfs -text
*.tar.* filter=lfs diff=lfs merge=lfs -text
*.tar filter=lfs diff=lfs merge=lfs -text
*.tflite filter=lfs diff=lfs merge=lfs -text
*.tgz filter=lfs diff=lfs merge=lfs -text
*.wasm filter=lfs diff=lfs merge=lfs -text
*.xz filter=lfs diff=lfs merge=lfs -text
*.zip filter=lfs diff=lfs merge=lfs -text
*.zst filter=lfs diff=lfs merge=lfs -text
*tfevents* filter=lfs diff=lfs merge=lfs -text
*.png filter=lfs diff=lfs merge=lfs -text
*.jpg filter=lfs diff=lfs merge=lfs -text
*.jpeg filter=lfs diff=lfs merge=lfs -text
"""


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a blob (what the Hub reports as ``oid`` / ``ETag`` for regular files)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_front_matter(text: str) -> tuple[dict | None, str | None]:
    """``(metadata, error)`` for a README: ``({}, None)`` without front matter, ``(None, msg)`` for invalid YAML."""
    match = _YAML_BLOCK.search(text)
    if match is None:
        return {}, None
    block = match.group(2)
    if _yaml is not None:
        try:
            data = _yaml.safe_load(block)
        except _yaml.YAMLError as exc:
            return None, f"Invalid YAML in README.md front matter: {exc}"
    else:  # pragma: no cover - minimal fallback
        data = {}
        for line in block.splitlines():
            if line.strip() and not line.startswith((" ", "-", "#")):
                key, sep, value = line.partition(":")
                if not sep:
                    return None, f"Invalid YAML line: {line!r}"
                data[key.strip()] = value.strip() or None
    if data is None:
        return {}, None
    if not isinstance(data, dict):
        return None, "YAML front matter must be a mapping"
    return data, None


# --------------------------------------------------------------------------------------------------------------------
# State
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileEntry:
    size: int
    git_oid: str  # git blob sha1 of the content (regular) or of the LFS pointer (LFS)
    lfs_sha256: str | None = None
    pointer_size: int | None = None

    @property
    def is_lfs(self) -> bool:
        return self.lfs_sha256 is not None


@dataclass
class Commit:
    oid: str
    parent: str | None
    title: str
    message: str
    author: str
    date: str
    tree: dict[str, FileEntry]


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    created_at: str
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)  # name -> head commit oid
    tags: dict[str, str] = field(default_factory=dict)

    def history(self, head: str) -> list[Commit]:
        """Commits reachable from ``head``, newest first."""
        out, oid = [], head
        while oid is not None:
            commit = self.commits[oid]
            out.append(commit)
            oid = commit.parent
        return out


@dataclass
class LoggedRequest:
    method: str
    path: str  # without the query string
    query: str
    status: int
    server: str  # "hub" or "cdn"
    authorized: bool  # carried an accepted bearer token
    user_agent: str = ""

    def __repr__(self) -> str:
        q = f"?{self.query}" if self.query else ""
        return f"<{self.server} {self.method} {self.path}{q} -> {self.status}>"


class _HttpError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, extra_headers: dict | None = None,
                 body: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code
        self.extra_headers = extra_headers or {}
        self.body = body


def _not_found_repo() -> _HttpError:
    return _HttpError(404, "Repository not found", "RepoNotFound")


class HubServer:
    """A Hub-compatible server on 127.0.0.1 (free ports chosen at :meth:`start`).

    Attributes:
        url: the endpoint to put in ``HF_ENDPOINT`` (``http://127.0.0.1:<port>``).
        cdn_url: the origin LFS objects are uploaded to / downloaded from.
        token: the accepted bearer token (any other token gets a 401 ``Invalid credentials``).
        user / orgs: the namespaces the token may write to.
        requests: log of :class:`LoggedRequest` (both servers), in arrival order.
    """

    def __init__(self, token: str = DEFAULT_TOKEN, user: str = DEFAULT_USER, orgs: tuple[str, ...] = DEFAULT_ORGS,
                 root: str | os.PathLike | None = None, tree_page_size: int = 1000):
        self.token, self.user, self.orgs = token, user, tuple(orgs)
        self.tree_page_size = tree_page_size
        self._own_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="hub_server_")) if root is None else Path(root)
        (self.root / "git").mkdir(parents=True, exist_ok=True)
        (self.root / "lfs").mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._repos: dict[tuple[str, str], Repo] = {}
        self._log: list[LoggedRequest] = []
        self._refusing: str | None = None  # None, "401" or "close"
        self._servers: list[ThreadingHTTPServer] = []
        self._threads: list[threading.Thread] = []
        self._sockets: set[socket.socket] = set()
        self._counter = 0
        self.url = ""
        self.cdn_url = ""

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> "HubServer":
        if self._servers:
            return self
        for kind in ("hub", "cdn"):
            server = _Server(("127.0.0.1", 0), _Handler)
            server.hub, server.kind = self, kind
            thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                      name=f"hub-server-{kind}", daemon=True)
            thread.start()
            self._servers.append(server)
            self._threads.append(thread)
        self.url = f"http://127.0.0.1:{self._servers[0].server_address[1]}"
        self.cdn_url = f"http://127.0.0.1:{self._servers[1].server_address[1]}"
        return self

    def stop(self) -> None:
        """Stop listening and drop open keep-alive connections: later connections are refused."""
        for server in self._servers:
            server.shutdown()
            server.server_close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread in self._threads:
            thread.join(timeout=5)
        self._servers, self._threads = [], []

    def cleanup(self) -> None:
        self.stop()
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "HubServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.cleanup()

    @property
    def running(self) -> bool:
        return bool(self._servers)

    # ---------------------------------------------------------------- test helpers
    def set_refusing(self, refusing: bool = True, mode: str = "401") -> None:
        """Refuse every request: ``mode="401"`` answers HTTP 401 (JSON error), ``"close"`` drops the connection."""
        if mode not in ("401", "close"):
            raise ValueError("mode must be '401' or 'close'")
        with self._lock:
            self._refusing = mode if refusing else None

    @property
    def requests(self) -> list[LoggedRequest]:
        with self._lock:
            return list(self._log)

    def clear_requests(self) -> None:
        with self._lock:
            self._log.clear()

    def repo_files(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> dict[str, bytes]:
        """``{path: content}`` of the repo at ``revision`` (branch, tag or commit id)."""
        with self._lock:
            repo = self._get_repo(repo_type, repo_id)
            commit = repo.commits[self._resolve(repo, revision)]
            tree = dict(commit.tree)
        return {path: self._read(entry) for path, entry in sorted(tree.items())}

    def commits(self, repo_id: str, repo_type: str = "model", branch: str = "main") -> list[str]:
        """Commit ids of ``branch``, oldest first (the first one is the repo-creation commit)."""
        with self._lock:
            repo = self._get_repo(repo_type, repo_id)
            return [c.oid for c in reversed(repo.history(repo.branches[branch]))]

    def repo_exists(self, repo_id: str, repo_type: str = "model") -> bool:
        with self._lock:
            return (repo_type, repo_id) in self._repos

    def create_repo(self, repo_id: str, repo_type: str = "model", private: bool = False) -> Repo:
        """Create a repo server-side (initial commit with .gitattributes), as ``POST /api/repos/create`` does."""
        with self._lock:
            if (repo_type, repo_id) in self._repos:
                raise ValueError(f"{repo_type} repo {repo_id} already exists")
            repo = Repo(repo_type=repo_type, repo_id=repo_id, private=private, created_at=_now())
            self._repos[(repo_type, repo_id)] = repo
            entry = self._store_regular(DEFAULT_GITATTRIBUTES.encode())
            self._add_commit(repo, "main", {".gitattributes": entry}, "initial commit", "", self.user)
            return repo

    # ---------------------------------------------------------------- storage internals
    def _store_regular(self, data: bytes) -> FileEntry:
        oid = git_blob_sha1(data)
        path = self.root / "git" / oid
        if not path.exists():
            path.write_bytes(data)
        return FileEntry(size=len(data), git_oid=oid)

    def _lfs_entry(self, sha256: str) -> FileEntry:
        size = (self.root / "lfs" / sha256).stat().st_size
        pointer = lfs_pointer(sha256, size)
        return FileEntry(size=size, git_oid=git_blob_sha1(pointer), lfs_sha256=sha256, pointer_size=len(pointer))

    def _has_lfs(self, sha256: str) -> bool:
        return bool(re.fullmatch(r"[0-9a-f]{64}", sha256)) and (self.root / "lfs" / sha256).exists()

    def _read(self, entry: FileEntry) -> bytes:
        if entry.is_lfs:
            return (self.root / "lfs" / entry.lfs_sha256).read_bytes()
        return (self.root / "git" / entry.git_oid).read_bytes()

    def _blob_path(self, entry: FileEntry) -> Path:
        return self.root / "lfs" / entry.lfs_sha256 if entry.is_lfs else self.root / "git" / entry.git_oid

    def _get_repo(self, repo_type: str, repo_id: str) -> Repo:
        try:
            return self._repos[(repo_type, repo_id)]
        except KeyError:
            raise KeyError(f"no {repo_type} repo {repo_id!r}") from None

    def _resolve(self, repo: Repo, revision: str) -> str:
        """Commit id for a branch, tag or (possibly abbreviated, >= 7 chars) commit id; raises RevisionNotFound."""
        if revision in repo.branches:
            return repo.branches[revision]
        if revision in repo.tags:
            return repo.tags[revision]
        for prefix in ("refs/heads/", "refs/tags/"):
            if revision.startswith(prefix):
                name = revision[len(prefix):]
                table = repo.branches if prefix == "refs/heads/" else repo.tags
                if name in table:
                    return table[name]
        if re.fullmatch(r"[0-9a-f]{7,40}", revision):
            matches = [oid for oid in repo.commits if oid.startswith(revision)]
            if len(matches) == 1:
                return matches[0]
        raise _HttpError(404, f"Invalid rev id: {revision}", "RevisionNotFound")

    def _add_commit(self, repo: Repo, branch: str, tree: dict[str, FileEntry], title: str, message: str,
                    author: str) -> Commit:
        parent = repo.branches.get(branch)
        self._counter += 1
        digest = hashlib.sha1(
            json.dumps([parent, sorted((p, e.git_oid) for p, e in tree.items()), title, message,
                        time.time_ns(), self._counter]).encode()
        ).hexdigest()
        commit = Commit(oid=digest, parent=parent, title=title, message=message, author=author, date=_now(),
                        tree=dict(tree))
        repo.commits[digest] = commit
        repo.branches[branch] = digest
        return commit

    def _log_request(self, entry: LoggedRequest) -> None:
        with self._lock:
            self._log.append(entry)

    def _user_for(self, token: str | None) -> str | None:
        return self.user if token is not None and token == self.token else None

    def _can_write(self, user: str | None, namespace: str) -> bool:
        return user is not None and (namespace == user or namespace in self.orgs)

    def _repo_url(self, repo: Repo) -> str:
        return f"{self.url}/{_URL_PREFIX[repo.repo_type]}{repo.repo_id}"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    hub: HubServer
    kind: str

    def process_request(self, request, client_address):
        with self.hub._lock:
            self.hub._sockets.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        with self.hub._lock:
            self.hub._sockets.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request, client_address):  # keep test output quiet on client disconnects
        pass


# --------------------------------------------------------------------------------------------------------------------
# HTTP handler
# --------------------------------------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the Hub; every response carries Content-Length
    server_version = "hfkd-hub-server/1.0"
    server: _Server

    # ------------------------------------------------ plumbing
    def log_message(self, format, *args):  # noqa: A002 - silence default stderr logging
        pass

    @property
    def hub(self) -> HubServer:
        return self.server.hub

    def do_GET(self):
        self._dispatch()

    def do_HEAD(self):
        self._dispatch()

    def do_POST(self):
        self._dispatch()

    def do_PUT(self):
        self._dispatch()

    def do_DELETE(self):
        self._dispatch()

    def do_PATCH(self):
        self._dispatch()

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                line = self.rfile.readline()
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()  # CRLF after each chunk
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _token(self) -> str | None:
        auth = self.headers.get("Authorization")
        if not auth:
            return None
        scheme, _, value = auth.partition(" ")
        return value.strip() if scheme.lower() == "bearer" else auth.strip()

    def _dispatch(self):
        split = urlsplit(self.path)
        self._status = 0
        self._query = parse_qs(split.query, keep_blank_values=True)
        self._raw_path = split.path
        self._request_body = b""
        token = self._token()
        self._user = self.hub._user_for(token)
        try:
            self._request_body = self._read_body()
            refusing = self.hub._refusing
            if refusing == "close":
                self._status = -1
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return
            if refusing == "401":
                # Same message as the Hub's bad-token answer, so the client never reads it as RepoNotFound.
                raise _HttpError(401, "Invalid credentials in Authorization header")
            if token is not None and self._user is None:
                # The Hub rejects unknown / revoked tokens on every route, even for public content.
                raise _HttpError(401, "Invalid credentials in Authorization header")
            if self.server.kind == "cdn":
                self._route_cdn()
            else:
                self._route_hub()
        except _HttpError as err:
            self._send_error(err)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:  # pragma: no cover - surfaces server bugs as 500 with the message
            import traceback

            traceback.print_exc()
            self._send_error(_HttpError(500, f"Internal server error: {exc!r}"))
        finally:
            self.hub._log_request(LoggedRequest(
                method=self.command, path=unquote(split.path), query=split.query, status=self._status,
                server=self.server.kind, authorized=self._user is not None,
                user_agent=self.headers.get("User-Agent", ""),
            ))

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, content_type: str | None = None):
        self._status = status
        self.send_response(status)
        headers = dict(headers or {})
        if content_type:
            headers.setdefault("Content-Type", content_type)
        headers.setdefault("Content-Length", str(len(body)))
        # Mirrors the Hub: every response carries a request id (shown in client error messages).
        headers.setdefault("X-Request-Id", f"Root=1-hubserver-{id(self):x}-{len(self.hub._log)}")
        for key, value in headers.items():
            # Header values must be single-line latin-1 (error messages may hold YAML errors, paths, ...).
            value = " ".join(str(value).split()) if key.lower().startswith("x-error") else str(value)
            self.send_header(key, value.encode("latin-1", errors="replace").decode("latin-1"))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _send_json(self, data: Any, status: int = 200, headers: dict | None = None):
        self._send(status, json.dumps(data).encode(), headers, "application/json; charset=utf-8")

    def _send_error(self, err: _HttpError):
        headers = {"X-Error-Message": err.message, **err.extra_headers}
        if err.code:
            headers["X-Error-Code"] = err.code
        body = err.body if err.body is not None else {"error": err.message}
        self._send_json(body, err.status, headers)

    def _json_body(self) -> Any:
        if not self._request_body:
            return {}
        try:
            return json.loads(self._request_body)
        except ValueError:
            raise _HttpError(400, "Invalid JSON body") from None

    def _require_user(self) -> str:
        if self._user is None:
            raise _HttpError(401, "You must be authenticated to access this resource (missing bearer token)")
        return self._user

    def _param(self, name: str, default: str | None = None) -> str | None:
        values = self._query.get(name)
        return values[0] if values else default

    def _flag(self, name: str) -> bool:
        return (self._param(name, "") or "").lower() in ("1", "true", "yes", "on")

    # ------------------------------------------------ repo lookup
    def _lookup(self, repo_type: str, repo_id: str, write: bool = False) -> Repo:
        hub = self.hub
        repo = hub._repos.get((repo_type, repo_id))
        if repo is None:
            raise _not_found_repo()
        if repo.private and (self._user is None or not hub._can_write(self._user, repo_id.split("/")[0])):
            # The Hub answers 401 + RepoNotFound for private repos the caller cannot see.
            raise _HttpError(401, "Invalid username or password.", "RepoNotFound")
        if write:
            user = self._require_user()
            if not hub._can_write(user, repo_id.split("/")[0]):
                raise _HttpError(403, f"You don't have the rights to write to {repo_id}", "Forbidden")
        return repo

    def _split_repo(self, repo_type: str, segments: list[str]) -> tuple[str, list[str]]:
        """Split ``ns/name/action/...`` or ``name/action/...`` into ``(repo_id, rest)``."""
        if len(segments) >= 2:
            two = "/".join(segments[:2])
            if (repo_type, two) in self.hub._repos:
                return two, segments[2:]
        if segments and (repo_type, segments[0]) in self.hub._repos:
            return segments[0], segments[1:]
        if len(segments) >= 2 and segments[1] not in _REPO_ACTIONS:
            return "/".join(segments[:2]), segments[2:]
        return (segments[0] if segments else ""), segments[1:]

    # ------------------------------------------------ hub routes
    def _route_hub(self):
        raw = self._raw_path
        method = self.command
        segments = [s for s in raw.split("/")][1:]
        if raw.startswith("/api/"):
            api = segments[1:]
            if api == ["whoami-v2"] and method == "GET":
                return self._whoami()
            if api == ["repos", "create"] and method == "POST":
                return self._create_repo()
            if api == ["repos", "delete"] and method == "DELETE":
                return self._delete_repo()
            if api == ["validate-yaml"] and method == "POST":
                return self._validate_yaml()
            if api and api[0] in _REPO_TYPES and len(api) >= 2:
                repo_type = _REPO_TYPES[api[0]]
                repo_id, rest = self._split_repo(repo_type, api[1:])
                return self._repo_api(repo_type, repo_id, rest)
            raise _HttpError(404, f"Not implemented by the test hub server: {method} {raw}")
        # git-LFS batch API: /{prefix}{repo_id}.git/info/lfs/objects/batch (+ /verify)
        match = re.fullmatch(r"/(?:(datasets|spaces|models)/)?(.+?)\.git/info/lfs/objects/(batch|verify)", raw)
        if match and method == "POST":
            repo_type = _REPO_TYPES[match.group(1) or "models"]
            return self._lfs_batch(repo_type, match.group(2)) if match.group(3) == "batch" else self._lfs_verify(
                repo_type, match.group(2))
        # /{prefix}{repo_id}/resolve/{revision}/{path}
        if method in ("GET", "HEAD"):
            prefix_type = "model"
            segs = segments
            if segs and segs[0] in _REPO_TYPES:
                prefix_type, segs = _REPO_TYPES[segs[0]], segs[1:]
            for idx in (1, 2):
                if len(segs) > idx + 2 and segs[idx] == "resolve":
                    repo_id = unquote("/".join(segs[:idx]))
                    return self._resolve_file(prefix_type, repo_id, unquote(segs[idx + 1]),
                                              unquote("/".join(segs[idx + 2:])))
        raise _HttpError(404, f"Not implemented by the test hub server: {method} {raw}")

    def _repo_api(self, repo_type: str, repo_id: str, rest: list[str]):
        method = self.command
        action = rest[0] if rest else None
        if action is None and method == "GET":
            return self._repo_info(repo_type, repo_id, "main")
        if action == "revision" and len(rest) >= 2 and method == "GET":
            return self._repo_info(repo_type, repo_id, unquote("/".join(rest[1:])))
        if action == "tree" and len(rest) >= 2 and method == "GET":
            return self._tree(repo_type, repo_id, unquote(rest[1]), unquote("/".join(rest[2:])))
        if action == "paths-info" and len(rest) >= 2 and method == "POST":
            return self._paths_info(repo_type, repo_id, unquote("/".join(rest[1:])))
        if action == "preupload" and len(rest) >= 2 and method == "POST":
            return self._preupload(repo_type, repo_id, unquote("/".join(rest[1:])))
        if action == "commit" and len(rest) >= 2 and method == "POST":
            return self._commit(repo_type, repo_id, unquote("/".join(rest[1:])))
        if action == "refs" and method == "GET":
            return self._refs(repo_type, repo_id)
        if action == "commits" and len(rest) >= 2 and method == "GET":
            return self._list_commits(repo_type, repo_id, unquote("/".join(rest[1:])))
        if action == "branch" and len(rest) >= 2 and method in ("POST", "DELETE"):
            return self._branch(repo_type, repo_id, unquote("/".join(rest[1:])))
        if action == "tag" and len(rest) >= 2 and method in ("POST", "DELETE"):
            return self._tag(repo_type, repo_id, unquote("/".join(rest[1:])))
        raise _HttpError(404, f"Not implemented by the test hub server: {method} {self._raw_path}")

    # ------------------------------------------------ endpoints
    def _whoami(self):
        if self._token() is None:
            raise _HttpError(401, "Invalid credentials in Authorization header")
        user = self._user
        self._send_json({
            "type": "user",
            "id": hashlib.sha1(user.encode()).hexdigest()[:24],
            "name": user,
            "fullname": "HFKD Tester",
            "email": f"{user}@example.invalid",
            "emailVerified": True,
            "canPay": False,
            "isPro": False,
            "periodEnd": None,
            "avatarUrl": "",
            "orgs": [{"type": "org", "name": org, "fullname": org, "roleInOrg": "write", "isEnterprise": False}
                     for org in self.hub.orgs],
            "auth": {"type": "access_token",
                     "accessToken": {"displayName": "hub-server-test", "role": "write", "createdAt": _now()}},
        })

    def _create_repo(self):
        user = self._require_user()
        body = self._json_body()
        name = body.get("name")
        if not name or "/" in name:
            raise _HttpError(400, "Invalid repo name")
        namespace = body.get("organization") or user
        repo_type = body.get("type") or "model"
        if repo_type not in _URL_PREFIX:
            raise _HttpError(400, f"Invalid repo type {repo_type!r}")
        if not self.hub._can_write(user, namespace):
            raise _HttpError(403, f"You don't have the rights to create a {repo_type} under the namespace "
                                  f"{namespace!r}", "Forbidden")
        private = body.get("private")
        if private is None:
            private = body.get("visibility") in ("private", "protected")
        repo_id = f"{namespace}/{name}"
        with self.hub._lock:
            existing = self.hub._repos.get((repo_type, repo_id))
            if existing is not None:
                url = self.hub._repo_url(existing)
                raise _HttpError(409, f"You already created this {repo_type} repo", None,
                                 body={"error": f"You already created this {repo_type} repo", "url": url})
            repo = self.hub.create_repo(repo_id, repo_type=repo_type, private=bool(private))
        self._send_json({"url": self.hub._repo_url(repo), "name": repo_id, "id": repo_id})

    def _delete_repo(self):
        user = self._require_user()
        body = self._json_body()
        namespace = body.get("organization") or user
        repo_type = body.get("type") or "model"
        repo_id = f"{namespace}/{body.get('name')}"
        with self.hub._lock:
            self._lookup(repo_type, repo_id, write=True)
            del self.hub._repos[(repo_type, repo_id)]
        self._send(200, b"")

    def _validate_yaml(self):
        body = self._json_body()
        _, error = parse_front_matter(body.get("content") or "")
        if error:
            raise _HttpError(400, error, body={"error": error, "errors": [{"message": error}], "warnings": []})
        self._send_json({"errors": [], "warnings": []})

    def _repo_info(self, repo_type: str, repo_id: str, revision: str):
        hub = self.hub
        with hub._lock:
            repo = self._lookup(repo_type, repo_id)
            oid = hub._resolve(repo, revision)
            commit = repo.commits[oid]
            tree = dict(commit.tree)
        blobs = self._flag("blobs")
        siblings = []
        for path, entry in sorted(tree.items()):
            sibling: dict[str, Any] = {"rfilename": path}
            if blobs:
                sibling["size"] = entry.size
                sibling["blobId"] = entry.git_oid
                if entry.is_lfs:
                    sibling["lfs"] = {"size": entry.size, "sha256": entry.lfs_sha256,
                                      "pointerSize": entry.pointer_size}
            siblings.append(sibling)
        card: dict | None = None
        if "README.md" in tree:
            card, _ = parse_front_matter(hub._read(tree["README.md"]).decode("utf-8", errors="replace"))
        card = card or None
        tags = [str(t) for t in (card or {}).get("tags") or []] if isinstance((card or {}).get("tags"), list) else []
        library = (card or {}).get("library_name")
        if library and library not in tags:
            tags.append(str(library))
        if card and card.get("license"):
            tags.append(f"license:{card['license']}")
        data: dict[str, Any] = {
            "_id": hashlib.sha1(f"{repo_type}/{repo_id}".encode()).hexdigest()[:24],
            "id": repo_id,
            "author": repo_id.split("/")[0] if "/" in repo_id else None,
            "sha": oid,
            "lastModified": commit.date,
            "createdAt": repo.created_at,
            "private": repo.private,
            "disabled": False,
            "gated": False,
            "downloads": 0,
            "likes": 0,
            "tags": tags,
            "siblings": siblings,
            "usedStorage": sum(e.size for e in tree.values()),
        }
        if card is not None:
            data["cardData"] = card
        if repo_type == "model":
            data["modelId"] = repo_id
            data["library_name"] = library
            data["pipeline_tag"] = (card or {}).get("pipeline_tag")
            data["spaces"] = []
            config_entry = tree.get("config.json")
            if config_entry is not None and not config_entry.is_lfs:
                try:
                    config = json.loads(hub._read(config_entry))
                    if isinstance(config, dict):
                        data["config"] = {k: config[k] for k in ("architectures", "model_type") if k in config}
                except ValueError:
                    pass
        elif repo_type == "space":
            data["sdk"] = (card or {}).get("sdk")
        self._send_json(data)

    @staticmethod
    def _tree_item(path: str, entry: FileEntry | None) -> dict:
        if entry is None:  # directory
            return {"type": "directory", "oid": hashlib.sha1(path.encode()).hexdigest(), "size": 0, "path": path}
        item: dict[str, Any] = {"type": "file", "oid": entry.git_oid, "size": entry.size, "path": path}
        if entry.is_lfs:
            item["lfs"] = {"oid": entry.lfs_sha256, "size": entry.size, "pointerSize": entry.pointer_size}
        return item

    @staticmethod
    def _directories(tree: dict[str, FileEntry]) -> set[str]:
        dirs = set()
        for path in tree:
            parts = path.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                dirs.add("/".join(parts[:i]))
        return dirs

    def _tree(self, repo_type: str, repo_id: str, revision: str, path: str):
        hub = self.hub
        with hub._lock:
            repo = self._lookup(repo_type, repo_id)
            oid = hub._resolve(repo, revision)
            tree = dict(repo.commits[oid].tree)
        path = path.strip("/")
        dirs = self._directories(tree)
        if path and path not in dirs:
            raise _HttpError(404, f"Entry not found: {path}", "EntryNotFound", {"X-Repo-Commit": oid})
        recursive = self._flag("recursive")
        prefix = f"{path}/" if path else ""
        items: list[dict] = []
        for d in sorted(dirs):
            if d.startswith(prefix) and (recursive or "/" not in d[len(prefix):]):
                items.append(self._tree_item(d, None))
        for p in sorted(tree):
            if p.startswith(prefix) and (recursive or "/" not in p[len(prefix):]):
                items.append(self._tree_item(p, tree[p]))
        # Cursor pagination with a GitHub-style Link header, like the Hub.
        start = int(self._param("cursor", "0") or 0)
        page = items[start:start + hub.tree_page_size]
        headers = {"X-Repo-Commit": oid}
        if start + hub.tree_page_size < len(items):
            query = "&".join(f"{k}={quote(v[0])}" for k, v in self._query.items() if k != "cursor")
            next_url = f"{hub.url}{self._raw_path}?{query}&cursor={start + hub.tree_page_size}"
            headers["Link"] = f'<{next_url}>; rel="next"'
        self._send_json(page, headers=headers)

    def _paths_info(self, repo_type: str, repo_id: str, revision: str):
        hub = self.hub
        with hub._lock:
            repo = self._lookup(repo_type, repo_id)
            oid = hub._resolve(repo, revision)
            tree = dict(repo.commits[oid].tree)
        content_type = self.headers.get("Content-Type", "")
        if "json" in content_type:
            paths = self._json_body().get("paths") or []
        else:
            paths = parse_qs(self._request_body.decode(), keep_blank_values=True).get("paths", [])
        dirs = self._directories(tree)
        out = []
        for p in paths:
            p = p.strip("/")
            if p in tree:
                out.append(self._tree_item(p, tree[p]))
            elif p in dirs:
                out.append(self._tree_item(p, None))
        self._send_json(out, headers={"X-Repo-Commit": oid})

    def _lfs_patterns(self, tree: dict[str, FileEntry], extra_gitattributes: str | None = None) -> list[str]:
        texts = []
        if ".gitattributes" in tree:
            texts.append(self.hub._read(tree[".gitattributes"]).decode("utf-8", errors="replace"))
        if extra_gitattributes:
            texts.append(extra_gitattributes)
        patterns = []
        for text in texts:
            for line in text.splitlines():
                parts = line.split()
                if len(parts) >= 2 and not parts[0].startswith("#") and "filter=lfs" in parts[1:]:
                    patterns.append(parts[0])
        return patterns

    @staticmethod
    def _matches(path: str, pattern: str) -> bool:
        if "/" in pattern:
            return fnmatch.fnmatch(path, pattern.replace("**/", "*"))
        return fnmatch.fnmatch(path.rsplit("/", 1)[-1], pattern)

    @staticmethod
    def _looks_binary(sample: bytes) -> bool:
        if b"\x00" in sample:
            return True
        try:
            sample.decode("utf-8")
        except UnicodeDecodeError as exc:
            return exc.start < len(sample) - 4  # a multi-byte char cut by the 512-byte sample is still text
        return False

    def _gitignore(self, tree: dict[str, FileEntry], body: dict) -> list[str]:
        text = body.get("gitIgnore")
        if text is None and ".gitignore" in tree:
            text = self.hub._read(tree[".gitignore"]).decode("utf-8", errors="replace")
        return [line.strip() for line in (text or "").splitlines() if line.strip() and not line.startswith("#")]

    def _preupload(self, repo_type: str, repo_id: str, revision: str):
        hub = self.hub
        with hub._lock:
            repo = self._lookup(repo_type, repo_id, write=True)
            if revision in repo.branches or revision.startswith("refs/pr/") or self._flag("create_pr"):
                oid = repo.branches.get(revision) or repo.branches["main"]
            else:
                oid = hub._resolve(repo, revision)
            tree = dict(repo.commits[oid].tree)
        body = self._json_body()
        files = body.get("files") or []
        lfs_patterns = self._lfs_patterns(tree)
        ignore = self._gitignore(tree, body)
        out = []
        for f in files:
            path = f["path"]
            size = int(f.get("size") or 0)
            sample = base64.b64decode(f.get("sample") or "")
            lfs = (size >= LFS_SIZE_THRESHOLD or any(self._matches(path, p) for p in lfs_patterns)
                   or self._looks_binary(sample))
            mode = "lfs" if lfs and size > 0 else "regular"
            existing = tree.get(path)
            remote_oid = None
            if existing is not None:
                remote_oid = existing.lfs_sha256 if existing.is_lfs else existing.git_oid
            should_ignore = any(self._matches(path, p.rstrip("/") + ("/*" if p.endswith("/") else ""))
                                for p in ignore)
            out.append({"path": path, "uploadMode": mode, "shouldIgnore": should_ignore, "oid": remote_oid})
        self._send_json({"files": out, "commitOid": oid})

    def _lfs_batch(self, repo_type: str, repo_id: str):
        hub = self.hub
        with hub._lock:
            repo = self._lookup(repo_type, repo_id, write=True)
        body = self._json_body()
        if body.get("operation") != "upload":
            raise _HttpError(400, "Only the 'upload' operation is supported by the test hub server")
        objects = []
        verify_href = f"{hub.url}/{_URL_PREFIX[repo_type]}{repo.repo_id}.git/info/lfs/objects/verify"
        for obj in body.get("objects") or []:
            oid, size = obj.get("oid"), obj.get("size")
            if not isinstance(oid, str) or not re.fullmatch(r"[0-9a-f]{64}", oid) or not isinstance(size, int):
                objects.append({"oid": str(oid), "size": int(size or 0),
                                "error": {"code": 422, "message": "Invalid oid or size"}})
                continue
            item: dict[str, Any] = {"oid": oid, "size": size, "authenticated": True}
            if not hub._has_lfs(oid):
                item["actions"] = {
                    "upload": {"href": f"{hub.cdn_url}/lfs-upload/{oid}?size={size}", "header": {},
                               "expires_at": "2099-01-01T00:00:00Z"},
                    "verify": {"href": verify_href, "header": {"X-Hub-Server": "verify"}},
                }
            objects.append(item)
        self._send_json({"transfer": "basic", "objects": objects, "hash_algo": "sha256"},
                        headers={"Content-Type": "application/vnd.git-lfs+json"})

    def _lfs_verify(self, repo_type: str, repo_id: str):
        with self.hub._lock:
            self._lookup(repo_type, repo_id, write=True)
        body = self._json_body()
        oid, size = body.get("oid", ""), body.get("size")
        if not self.hub._has_lfs(oid):
            raise _HttpError(404, f"LFS object {oid} was not uploaded")
        actual = (self.hub.root / "lfs" / oid).stat().st_size
        if size is not None and int(size) != actual:
            raise _HttpError(422, f"LFS object {oid} has size {actual}, expected {size}")
        self._send_json({"success": True})

    def _commit(self, repo_type: str, repo_id: str, revision: str):
        hub = self.hub
        if self._flag("create_pr"):
            raise _HttpError(400, "create_pr is not supported by the test hub server")
        body = self._request_body.decode("utf-8")
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        if lines and "key" not in lines[0] and isinstance(lines[0], dict) and "summary" in lines[0]:
            raise _HttpError(400, "Only the NDJSON commit payload is supported")
        header: dict = {}
        ops: list[tuple[str, dict]] = []
        for item in lines:
            if item.get("key") == "header":
                header = item.get("value") or {}
            else:
                ops.append((item.get("key"), item.get("value") or {}))
        summary = (header.get("summary") or "").strip()
        if not summary:
            raise _HttpError(400, "Commit summary (message) is required")
        with hub._lock:
            repo = self._lookup(repo_type, repo_id, write=True)
            if revision not in repo.branches:
                raise _HttpError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
            head = repo.branches[revision]
            parent = header.get("parentCommit")
            if parent is not None and not head.startswith(parent):
                raise _HttpError(412, "A commit has happened since. Please refresh and try again.")
            tree = dict(repo.commits[head].tree)
            for key, value in ops:
                path = (value.get("path") or "").strip("/")
                if key == "file":
                    encoding = value.get("encoding", "base64")
                    content = value.get("content", "")
                    data = base64.b64decode(content) if encoding == "base64" else content.encode()
                    tree[path] = hub._store_regular(data)
                elif key == "lfsFile":
                    oid = value.get("oid", "")
                    if not hub._has_lfs(oid):
                        raise _HttpError(422, f"LFS pointer for {path} references an object that was not uploaded: "
                                              f"{oid}")
                    entry = hub._lfs_entry(oid)
                    if value.get("size") is not None and int(value["size"]) != entry.size:
                        raise _HttpError(422, f"Size mismatch for LFS file {path}")
                    tree[path] = entry
                elif key == "deletedFile":
                    if path not in tree:
                        raise _HttpError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
                    del tree[path]
                elif key == "deletedFolder":
                    removed = [p for p in tree if p.startswith(path + "/")] if path else list(tree)
                    if not removed:
                        raise _HttpError(404, f"A folder with this name doesn't exist: {path}", "EntryNotFound")
                    for p in removed:
                        del tree[p]
                else:
                    raise _HttpError(400, f"Unsupported commit operation {key!r}")
            commit = hub._add_commit(repo, revision, tree, summary, header.get("description") or "",
                                     self._user or "")
            url = f"{hub._repo_url(repo)}/commit/{commit.oid}"
        self._send_json({"success": True, "commitOid": commit.oid, "commitUrl": url, "hookOutput": ""})

    def _refs(self, repo_type: str, repo_id: str):
        with self.hub._lock:
            repo = self._lookup(repo_type, repo_id)
            branches = [{"name": n, "ref": f"refs/heads/{n}", "targetCommit": c} for n, c in repo.branches.items()]
            tags = [{"name": n, "ref": f"refs/tags/{n}", "targetCommit": c} for n, c in repo.tags.items()]
        self._send_json({"branches": branches, "converts": [], "tags": tags, "pullRequests": []})

    def _list_commits(self, repo_type: str, repo_id: str, revision: str):
        with self.hub._lock:
            repo = self._lookup(repo_type, repo_id)
            history = repo.history(self.hub._resolve(repo, revision))
        self._send_json([
            {"id": c.oid, "title": c.title, "message": c.message, "authors": [{"user": c.author}], "date": c.date}
            for c in history
        ])

    def _branch(self, repo_type: str, repo_id: str, branch: str):
        hub = self.hub
        with hub._lock:
            repo = self._lookup(repo_type, repo_id, write=True)
            if self.command == "DELETE":
                if branch == "main" or branch not in repo.branches:
                    raise _HttpError(404 if branch != "main" else 403, f"Cannot delete branch {branch}")
                del repo.branches[branch]
                return self._send_json({})
            if branch in repo.branches:
                raise _HttpError(409, f"Reference already exists: refs/heads/{branch}")
            if branch.startswith("refs/"):
                raise _HttpError(400, f"Invalid branch name {branch}")
            start = self._json_body().get("startingPoint") or "main"
            repo.branches[branch] = hub._resolve(repo, start)
        self._send_json({})

    def _tag(self, repo_type: str, repo_id: str, revision_or_tag: str):
        hub = self.hub
        with hub._lock:
            repo = self._lookup(repo_type, repo_id, write=True)
            if self.command == "DELETE":
                if revision_or_tag not in repo.tags:
                    raise _HttpError(404, f"Tag {revision_or_tag} not found", "RevisionNotFound")
                del repo.tags[revision_or_tag]
                return self._send_json({})
            tag = self._json_body().get("tag")
            if not tag:
                raise _HttpError(400, "Missing tag name")
            if tag in repo.tags:
                raise _HttpError(409, f"Tag {tag} already exists")
            repo.tags[tag] = hub._resolve(repo, revision_or_tag)
        self._send_json({})

    def _resolve_file(self, repo_type: str, repo_id: str, revision: str, path: str):
        hub = self.hub
        with hub._lock:
            repo = self._lookup(repo_type, repo_id)
            oid = hub._resolve(repo, revision)
            entry = repo.commits[oid].tree.get(path)
        headers = {"X-Repo-Commit": oid, "Accept-Ranges": "bytes", "Vary": "Origin, Accept"}
        if entry is None:
            raise _HttpError(404, "Entry not found", "EntryNotFound", headers)
        if entry.is_lfs:
            # Like the Hub: redirect to the storage origin; the metadata rides on the redirect itself.
            name = quote(path.rsplit("/", 1)[-1])
            location = f"{hub.cdn_url}/lfs-blobs/{entry.lfs_sha256}?filename={name}"
            headers.update({
                "Location": location,
                "ETag": f'"{entry.git_oid}"',
                "X-Linked-Etag": f'"{entry.lfs_sha256}"',
                "X-Linked-Size": str(entry.size),
            })
            body = f"Found. Redirecting to {location}".encode()
            return self._send(302, body, headers, "text/plain; charset=utf-8")
        headers["ETag"] = f'"{entry.git_oid}"'
        headers["Content-Disposition"] = f'inline; filename="{path.rsplit("/", 1)[-1]}"'
        self._send_file(hub._blob_path(entry), headers)

    def _send_file(self, blob: Path, headers: dict):
        data = blob.read_bytes()
        total = len(data)
        status = 200
        range_header = self.headers.get("Range")
        if range_header:
            match = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", range_header)
            if match is None or (not match.group(1) and not match.group(2)):
                raise _HttpError(416, f"Invalid range {range_header}",
                                 extra_headers={"Content-Range": f"bytes */{total}"})
            if match.group(1):
                start = int(match.group(1))
                end = int(match.group(2)) if match.group(2) else total - 1
            else:
                start, end = max(total - int(match.group(2)), 0), total - 1
            end = min(end, total - 1)
            if start >= total or start > end:
                raise _HttpError(416, "Range not satisfiable", extra_headers={"Content-Range": f"bytes */{total}"})
            data = data[start:end + 1]
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{total}"
        self._send(status, data, headers, "application/octet-stream")

    # ------------------------------------------------ CDN routes
    def _route_cdn(self):
        hub = self.hub
        raw = self._raw_path
        match = re.fullmatch(r"/lfs-upload/([0-9a-f]{64})", raw)
        if match and self.command == "PUT":
            oid = match.group(1)
            data = self._request_body
            if hashlib.sha256(data).hexdigest() != oid:
                raise _HttpError(400, "Uploaded content does not match the announced sha256")
            expected = self._param("size")
            if expected is not None and int(expected) != len(data):
                raise _HttpError(400, "Uploaded content does not match the announced size")
            path = hub.root / "lfs" / oid
            tmp = path.with_suffix(f".tmp{threading.get_ident()}")
            tmp.write_bytes(data)
            os.replace(tmp, path)
            return self._send(200, b"", {"ETag": f'"{hashlib.md5(data).hexdigest()}"'})
        match = re.fullmatch(r"/lfs-blobs/([0-9a-f]{64})", raw)
        if match and self.command in ("GET", "HEAD"):
            oid = match.group(1)
            if not hub._has_lfs(oid):
                raise _HttpError(404, "NoSuchKey")
            headers = {"ETag": f'"{oid}"', "Accept-Ranges": "bytes"}
            filename = self._param("filename")
            if filename:
                headers["Content-Disposition"] = f'inline; filename*=UTF-8\'\'{quote(filename)}; filename="{filename}"'
            return self._send_file(hub.root / "lfs" / oid, headers)
        raise _HttpError(404, f"Not found on the test CDN: {self.command} {raw}")


# --------------------------------------------------------------------------------------------------------------------
# Client environment + pytest fixture
# --------------------------------------------------------------------------------------------------------------------


def hub_env(server: HubServer, home: str | os.PathLike) -> dict[str, str]:
    """Environment variables that make a *fresh* process's HF clients talk to ``server``, online, caching in ``home``.

    Merge over ``os.environ`` for ``subprocess`` (``env={**os.environ, **hub_env(server, home)}``). They must be in
    place before ``huggingface_hub`` is imported, which is why they are meant for a subprocess.
    """
    home = str(home)
    existing_no_proxy = os.environ.get("NO_PROXY") or os.environ.get("no_proxy")
    no_proxy = ",".join(x for x in (existing_no_proxy, "127.0.0.1,localhost") if x)
    return {
        "HF_ENDPOINT": server.url,
        "HF_HUB_DISABLE_XET": "1",
        "HF_TOKEN": server.token,
        "HF_HOME": home,
        "HF_HUB_CACHE": os.path.join(home, "hub"),
        "HUGGINGFACE_HUB_CACHE": os.path.join(home, "hub"),
        "HF_ASSETS_CACHE": os.path.join(home, "assets"),
        "HF_XET_CACHE": os.path.join(home, "xet"),
        "HF_DATASETS_CACHE": os.path.join(home, "datasets"),
        "HF_TOKEN_PATH": os.path.join(home, "token"),
        "HF_HUB_OFFLINE": "0",
        "HF_DATASETS_OFFLINE": "0",
        "TRANSFORMERS_OFFLINE": "0",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_IMPLICIT_TOKEN": "0",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_HUB_DISABLE_UPDATE_CHECK": "1",
        "HF_HUB_DISABLE_SYMLINKS_WARNING": "1",
        "HUGGINGFACE_CO_STAGING": "0",
        "HF_HUB_ETAG_TIMEOUT": "10",
        "HF_HUB_DOWNLOAD_TIMEOUT": "30",
        "NO_PROXY": no_proxy,
        "no_proxy": no_proxy,
    }


RESULT_MARKER = "__HUB_CLIENT_RESULT__"

_CLIENT_PRELUDE = f"""
import json as _hub_json


def emit(obj):
    \"\"\"Hand ``obj`` (JSON-serialisable) back to the test; the last call wins.\"\"\"
    print("\\n{RESULT_MARKER}" + _hub_json.dumps(obj), flush=True)


def error_info(exc):
    \"\"\"A JSON-friendly description of an exception raised by a client call.\"\"\"
    response = getattr(exc, "response", None)
    return {{
        "type": type(exc).__name__,
        "mro": [cls.__name__ for cls in type(exc).__mro__],
        "status": getattr(response, "status_code", None),
        "message": str(exc),
    }}

"""


def run_hub_client(server: HubServer, home: str | os.PathLike, code: str, *, timeout: float = 300,
                   extra_env: dict[str, str] | None = None) -> Any:
    """Run ``code`` in a fresh Python process whose HF clients use ``server``; return what it ``emit``-ted.

    ``code`` (dedented) can call ``emit(obj)`` and ``error_info(exc)``. The process runs in an empty working
    directory under ``home`` (so a repo id never collides with a local folder), with the repository root on
    ``PYTHONPATH``. A non-zero exit or a missing result raises ``AssertionError`` with the process output.
    """
    home = Path(home)
    cwd = home / "cwd"
    cwd.mkdir(parents=True, exist_ok=True)
    repo_root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, **hub_env(server, home), **(extra_env or {})}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (repo_root, os.environ.get("PYTHONPATH")) if p)
    proc = subprocess.run([sys.executable, "-c", _CLIENT_PRELUDE + textwrap.dedent(code)], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)
    results = [line[len(RESULT_MARKER):] for line in proc.stdout.splitlines() if line.startswith(RESULT_MARKER)]
    if proc.returncode != 0 or not results:
        raise AssertionError(
            f"hub client process exited with {proc.returncode} (results: {len(results)})\n"
            f"--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-8000:]}"
        )
    return json.loads(results[-1])


try:
    import pytest
except ImportError:  # pragma: no cover - the module is also usable outside pytest
    pytest = None

if pytest is not None:

    @pytest.fixture()
    def hub_server():
        """A fresh :class:`HubServer` per test (empty storage and log, not refusing); stopped and removed after.

        Function scope: starting one costs a few milliseconds, and it keeps ``set_refusing`` / ``stop`` / the
        request log from leaking between tests. Share one across a module with your own ``scope="module"`` fixture
        (``with HubServer() as server: yield server``) when tests build on each other's uploads.
        """
        with HubServer() as server:
            yield server
