"""A local stand-in for the Hugging Face Hub on 127.0.0.1, serving repositories a test builds.

It answers the requests `huggingface_hub` makes to download files: `HEAD`/`GET
/{repo}/resolve/{revision}/{path}` (with the `X-Repo-Commit`, `ETag` and `Content-Length` headers
and the Hub's `X-Error-Code` on 404s), `GET /api/models/{repo}/tree/{revision}` for listings and
`GET /api/models/{repo}/revision/{revision}` for `snapshot_download`'s `repo_info`.
Every request is counted; a file can be set to arrive truncated (half its body, then the
connection closes) for its next N downloads.
"""
from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse


class Repo:
    def __init__(self):
        self.commits: dict[str, dict[str, bytes]] = {}  # commit sha -> files
        self.branches: dict[str, str] = {}

    def commit(self, files: dict[str, bytes], branch: str = "main") -> str:
        sha = hashlib.sha1(json.dumps(sorted((k, hashlib.sha256(v).hexdigest()) for k, v in files.items()))
                           .encode() + str(len(self.commits)).encode()).hexdigest()
        self.commits[sha] = dict(files)
        self.branches[branch] = sha
        return sha

    def resolve(self, revision: str) -> str | None:
        if revision in self.commits:
            return revision
        return self.branches.get(revision)


def folder_files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


class LocalHub:
    def __init__(self):
        self.repos: dict[str, Repo] = {}
        self.requests: list[tuple[str, str]] = []
        self.truncate: dict[str, int] = {}  # "repo/path" -> how many more GETs send half the body
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_HEAD(self):
                hub._serve(self, body=False)

            def do_GET(self):
                hub._serve(self, body=True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def add(self, repo_id: str, files: dict[str, bytes], branch: str = "main") -> str:
        return self.repos.setdefault(repo_id, Repo()).commit(files, branch)

    def downloads(self) -> list[str]:
        return [path for method, path in self.requests if method == "GET"]

    # --------------------------------------------------------------------------------------
    def _serve(self, h: BaseHTTPRequestHandler, body: bool) -> None:
        path = unquote(urlparse(h.path).path)
        self.requests.append((h.command, path))
        parts = path.strip("/").split("/")
        if len(parts) >= 5 and parts[0] == "api" and parts[1] == "models" and parts[4] == "tree":
            return self._tree(h, "/".join(parts[2:4]), parts[5] if len(parts) > 5 else "main", body)
        if len(parts) >= 5 and parts[0] == "api" and parts[1] == "models" and parts[4] == "revision":
            return self._info(h, "/".join(parts[2:4]), parts[5] if len(parts) > 5 else "main", body)
        if len(parts) < 5 or parts[2] != "resolve":
            return self._error(h, 404, "RepoNotFound", None, body)
        repo_id, revision, filename = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
        repo = self.repos.get(repo_id)
        if repo is None:
            return self._error(h, 404, "RepoNotFound", None, body)
        sha = repo.resolve(revision)
        if sha is None:
            return self._error(h, 404, "RevisionNotFound", None, body)
        data = repo.commits[sha].get(filename)
        if data is None:
            return self._error(h, 404, "EntryNotFound", sha, body)
        h.send_response(200)
        h.send_header("X-Repo-Commit", sha)
        h.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if not body:
            return
        key = f"{repo_id}/{filename}"
        if self.truncate.get(key, 0) > 0:
            self.truncate[key] -= 1
            h.wfile.write(data[: len(data) // 2])
            h.wfile.flush()
            h.close_connection = True
            return
        h.wfile.write(data)

    def _tree(self, h, repo_id: str, revision: str, body: bool) -> None:
        repo = self.repos.get(repo_id)
        sha = repo.resolve(revision) if repo else None
        if sha is None:
            return self._error(h, 404, "RepoNotFound" if repo is None else "RevisionNotFound", None, body)
        items = [{"type": "file", "path": k, "size": len(v), "oid": hashlib.sha1(v).hexdigest()}
                 for k, v in sorted(repo.commits[sha].items())]
        data = json.dumps(items).encode()
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if body:
            h.wfile.write(data)

    def _info(self, h, repo_id: str, revision: str, body: bool) -> None:
        """`repo_info`, as `snapshot_download` asks for it before listing the tree."""
        repo = self.repos.get(repo_id)
        sha = repo.resolve(revision) if repo else None
        if sha is None:
            return self._error(h, 404, "RepoNotFound" if repo is None else "RevisionNotFound", None, body)
        data = json.dumps({"id": repo_id, "sha": sha, "siblings": [{"rfilename": k} for k in sorted(repo.commits[sha])]
                           }).encode()
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if body:
            h.wfile.write(data)

    @staticmethod
    def _error(h, status: int, code: str, sha: str | None, body: bool) -> None:
        data = json.dumps({"error": code}).encode()
        h.send_response(status)
        h.send_header("X-Error-Code", code)
        if sha is not None:
            h.send_header("X-Repo-Commit", sha)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if body:
            h.wfile.write(data)
