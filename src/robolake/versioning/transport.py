"""The plumbing every lakeFS call goes through: sessions, one request, pagination, naming a 404.

One `requests.Session` per thread, because a Session is not thread-safe and the dataset
functions upload with a thread pool; all of them use the same key pair (HTTP basic auth).
Every request runs inside `errors.translate_errors`: callers only ever see robolake errors.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator, Mapping
from typing import IO, Any, Self
from urllib.parse import quote

import requests

from robolake.config import Settings
from robolake.versioning.errors import Call, Kind, translate_errors

PAGE_SIZE = 1000  # the largest `amount` lakeFS accepts
q = functools.partial(quote, safe="")  # names in URL paths: "a/b" must stay one segment


class LakeFSTransport:
    """Requests to the lakeFS API at `endpoint` (e.g. http://127.0.0.1:8000) with one key pair."""

    def __init__(
        self,
        endpoint: str,
        access_key_id: str,
        secret_access_key: str,
        *,
        timeout_s: float = 60.0,
        long_timeout_s: float = 1800.0,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.access_key_id = access_key_id
        self._secret_access_key = secret_access_key
        self.timeout_s = timeout_s
        # Commits, merges and reverts write metaranges; on large branches that takes minutes.
        self.long_timeout_s = long_timeout_s
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._sessions_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(endpoint={self.endpoint!r}, access_key_id={self.access_key_id!r})"

    @classmethod
    def from_settings(cls, settings: Settings, *, endpoint: str | None = None) -> Self:
        """A client for the stack `settings` describe, with the keys `Settings.resolve_lakefs_keys` finds."""
        return cls(endpoint or settings.lakefs_endpoint, *settings.resolve_lakefs_keys())

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.auth = (self.access_key_id, self._secret_access_key)
            self._local.session = session
            with self._sessions_lock:
                self._sessions.append(session)
        return session

    def close(self) -> None:
        """Close the sessions of every thread that used this client."""
        with self._sessions_lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()
        self._local = threading.local()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(
        self,
        method: str,
        path: str,
        call: Call,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: bytes | IO[bytes] | None = None,
        headers: Mapping[str, str] | None = None,
        stream: bool = False,
        timeout_s: float | None = None,
    ) -> requests.Response:
        timeout = timeout_s or self.timeout_s
        with translate_errors(self.endpoint, call, self.access_key_id, self._locate):
            response = self._session().request(
                method,
                f"{self.endpoint}/api/v1{path}",
                params=params,
                json=json,
                data=data,
                headers=headers,
                stream=stream,
                timeout=(min(5.0, timeout), timeout),
            )
            response.raise_for_status()
        return response

    def _locate(self, call: Call) -> tuple[Kind, str] | None:
        """After a 404: probe the repository, then each ref, to name the part that is missing."""
        repo = f"/repositories/{q(call.repo)}"
        probes: list[tuple[Kind, str, str]] = [("repository", call.repo, repo)] if call.repo else []
        for kind, name in call.refs:
            # GET commits/{ref} dereferences any ref: branch, tag, commit id, or `main~1`.
            where = {"branch": "branches", "tag": "tags"}.get(kind, "commits")
            probes.append((kind, name, f"{repo}/{where}/{q(name)}"))
        for kind, name, path in probes:
            try:
                url = f"{self.endpoint}/api/v1{path}"
                status = self._session().get(url, timeout=(5.0, self.timeout_s)).status_code
            except requests.RequestException:
                return None
            if status == 404:
                return kind, name
            if status >= 300:
                return None
        return ("path", call.path) if call.path else None

    def _pages(
        self, path: str, call: Call, params: Mapping[str, Any] | None = None, amount: int = PAGE_SIZE
    ) -> Iterator[Any]:
        """Every result of a paginated listing, following `pagination.next_offset`."""
        query = {**(params or {}), "amount": amount}
        while True:
            body = self._request("GET", path, call, params=query).json()
            yield from body.get("results", [])
            page = body.get("pagination") or {}
            if not page.get("has_more") or not page.get("next_offset"):
                return
            query["after"] = page["next_offset"]
