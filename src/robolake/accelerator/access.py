"""Who may read what from the cache: MinIO's own decisions per principal, remembered briefly.

The cache holds objects, not permissions. A team's users (robolake.accelerator.principals) get
cache hits, but MinIO stays the judge of what each may read. Why no request through the
accelerator reads more than the same request could from MinIO directly:

1. Only a request whose SigV4 signature the accelerator verifies names a principal; anything
   else (unsigned, unknown key, wrong secret, expired) goes to MinIO untouched, which answers.
   A removed user's secret leaves the verifier within one poll of the users file (POLL_S).
2. MinIO's root user (the accelerator's own principal) may read every object; every other
   principal is answered from the cache only while it holds a fresh *allow* for the object's
   bucket (or, see 3, for that one object). An allow is learnt only from MinIO's answer to that
   principal's own signed request, passed on unchanged: a 200, 206 or 304 from MinIO means MinIO
   let this principal read this object. Without a fresh allow the request goes to MinIO, so a
   principal without access gets MinIO's 403, cached object or not. A 403 drops the allow.
3. An allow covers the whole bucket only when MinIO confirms, through its admin API (asked as
   root), that the user is enabled, in no group, and has exactly the robolake policy the users
   file records, with exactly robolake's document (principals.Policy.document): a policy that
   grants or withholds whole buckets. Otherwise (a policy edited by hand, a group, a prefix-
   scoped policy) the allow covers the one object MinIO served.
4. Allows expire after `ttl_s` (a policy changed straight in MinIO applies to cache hits within
   it), and all of a user's are dropped when the users file changes for that user (`users
   remove`, a new policy): the file is polled every POLL_S seconds.
5. Only reads are answered locally. Writes, listings and batch GET for users other than root
   (robolake.accelerator.batch) are MinIO's or refused; prefetch fills the cache as root but
   answers nobody.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiohttp import web

from robolake.accelerator.fill import OwnSigner
from robolake.accelerator.invalidation import ObjectKey
from robolake.accelerator.metrics import Metrics
from robolake.accelerator.principals import Policy, User, load_users
from robolake.accelerator.tasks import BackgroundTasks
from robolake.accelerator.upstream import Sender, UpstreamRequest
from robolake.errors import RobolakeError
from robolake.sigv4 import Verifier

POLL_S = 0.25
ALLOWED = (200, 206, 304)
MAX_OBJECT_GRANTS = 100_000  # per-object allows kept at once, the oldest dropped first
ADMIN = "/minio/admin/v3"


@dataclasses.dataclass(kw_only=True, eq=False)
class AccessDecisions:
    """Allows learnt from MinIO, per (principal, bucket) and per (principal, bucket, key)."""

    own: frozenset[str]  # principals that may read everything (MinIO's root user)
    ttl_s: float
    clock: Callable[[], float] = time.monotonic
    buckets: dict[tuple[str, str], float] = dataclasses.field(default_factory=dict)
    objects: OrderedDict[tuple[str, str, str], float] = dataclasses.field(default_factory=OrderedDict)

    def allows(self, principal: str, key: ObjectKey) -> bool:
        """Whether the cache may answer `principal`'s read of `key`."""
        if principal in self.own:
            return True
        now = self.clock()
        return self.buckets.get((principal, key[0]), 0.0) > now or self.objects.get((principal, *key), 0.0) > now

    def grant(self, principal: str, key: ObjectKey, *, bucket_wide: bool) -> None:
        expires = self.clock() + self.ttl_s
        if bucket_wide:
            self.buckets[(principal, key[0])] = expires
            return
        self.objects[(principal, *key)] = expires
        self.objects.move_to_end((principal, *key))
        if len(self.objects) > MAX_OBJECT_GRANTS:
            self.objects.popitem(last=False)

    def deny(self, principal: str, key: ObjectKey) -> None:
        """MinIO refused `principal` in `key`'s bucket: nothing of that bucket is answered for it."""
        self.buckets.pop((principal, key[0]), None)
        for grant in [g for g in self.objects if g[0] == principal and g[1] == key[0]]:
            del self.objects[grant]

    def forget(self, principal: str) -> None:
        """Drop every allow of `principal` (its secret or policy changed, or it was removed)."""
        for grant in [g for g in self.buckets if g[0] == principal]:
            del self.buckets[grant]
        for object_grant in [g for g in self.objects if g[0] == principal]:
            del self.objects[object_grant]


class PolicyCheckError(RobolakeError):
    """MinIO's admin API did not answer as expected: the allow then covers one object."""


@dataclasses.dataclass(kw_only=True, eq=False)
class Gatekeeper:
    """Answers `allows`, learns from MinIO's answers, and follows the users file."""

    decisions: AccessDecisions
    verifier: Verifier
    upstream: Sender
    signer: OwnSigner
    metrics: Metrics
    own_secrets: Mapping[str, str]
    users_file: Path | None
    users: dict[str, User] = dataclasses.field(default_factory=dict)
    _stamp: tuple[int, int, int] | None = None
    loaded: str = ""  # file_stamp() of the users file in force ("" none): `robolake users` waits for it
    _confirmed: dict[str, float] = dataclasses.field(default_factory=dict)  # user -> bucket-wide until
    _background: BackgroundTasks = dataclasses.field(default_factory=lambda: BackgroundTasks("users file"))

    def allows(self, principal: str, key: ObjectKey) -> bool:
        return self.decisions.allows(principal, key)

    async def learn(self, principal: str, key: ObjectKey, status: int) -> None:
        """Remember what MinIO's `status` to `principal`'s own read of `key` says of its access."""
        if principal in self.decisions.own or principal not in self.users:
            return
        if status == 403:
            self.decisions.deny(principal, key)
            self.metrics.inc("access_denied_learnt")
        elif status in ALLOWED:
            self.decisions.grant(principal, key, bucket_wide=await self._bucket_wide(principal))
            self.metrics.inc("access_allowed_learnt")

    async def _bucket_wide(self, name: str) -> bool:
        """Whether MinIO confirms `name`'s policy is robolake's bucket-granular one (cached for ttl_s)."""
        now = self.decisions.clock()
        if self._confirmed.get(name, 0.0) > now:
            return True
        try:
            confirmed = await self._policy_is_robolakes(self.users[name])
        except (RobolakeError, TimeoutError, OSError, ValueError):  # NoHealthyNodeError is a RobolakeError
            self.metrics.inc("access_policy_check_failed")
            confirmed = False
        if confirmed:
            self._confirmed[name] = now + self.decisions.ttl_s
        return confirmed

    async def _policy_is_robolakes(self, user: User) -> bool:
        info = await self._admin_json("user-info", [("accessKey", user.name)])
        if info.get("status") != "enabled" or info.get("memberOf") or info.get("policyName") != user.minio_policy:
            return False
        stored = await self._admin_json("info-canned-policy", [("name", user.minio_policy)])  # the document
        return _normal(stored) == _normal(Policy.parse(user.policy).document())

    async def _admin_json(self, command: str, query: list[tuple[str, str]]) -> dict[str, Any]:
        path = f"{ADMIN}/{command}"
        target = path + "?" + "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(query))
        request = UpstreamRequest("GET", target, self.signer.headers_for("GET", path, query))
        async with asyncio.timeout(5.0), await self.upstream.request(request, retry=True) as response:
            if response.status != 200:
                raise PolicyCheckError(f"MinIO's admin API answered {response.status} to {command}")
            doc = json.loads(await response.read())
        if not isinstance(doc, dict):
            raise PolicyCheckError(f"MinIO's admin API answered {command} with no JSON object")
        return doc

    def poll(self) -> bool:
        """Reload the users file if it changed; True when it did."""
        if self.users_file is None:
            return False
        try:
            st = os.stat(self.users_file)
            stamp: tuple[int, int, int] | None = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            stamp = None
        if stamp == self._stamp:
            return False
        users = load_users(self.users_file) if stamp is not None else {}
        for name in set(self.users) | set(users):
            if self.users.get(name) != users.get(name):
                self.decisions.forget(name)
                self._confirmed.pop(name, None)
        self.verifier.replace_secrets({**{u.name: u.secret for u in users.values()}, **self.own_secrets})
        self.users, self._stamp = users, stamp
        self.loaded = file_stamp(stamp)
        self.metrics.inc("users_file_loaded")
        return True

    async def lifespan(self, _: web.Application) -> AsyncIterator[None]:
        self.poll()
        self._background.spawn(self._poll_loop())
        yield
        await self._background.close()

    async def _poll_loop(self) -> None:
        while True:
            await asyncio.sleep(POLL_S)
            try:
                self.poll()
            except RobolakeError:  # a file being replaced by hand: the last good one stays
                self.metrics.inc("users_file_unreadable")


def file_stamp(stamp: tuple[int, int, int] | None) -> str:
    """A users file's version as /stats reports it: mtime_ns:size:inode ("" for no file)."""
    return ":".join(map(str, stamp)) if stamp is not None else ""


def stamp_of(path: Path) -> str:
    """`file_stamp` of the file at `path` now."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return ""
    return file_stamp((st.st_mtime_ns, st.st_size, st.st_ino))


def _normal(doc: dict[str, Any]) -> list[tuple[str, tuple[str, ...], tuple[str, ...], tuple[str, ...]]]:
    """A policy's statements as comparable values (MinIO may reorder lists and add empty fields)."""

    def listed(value: Any) -> tuple[str, ...]:
        return tuple(sorted([value] if isinstance(value, str) else [str(v) for v in value or ()]))

    # Any other field with a value (NotAction, NotResource, Principal, Condition) makes it unequal.
    return sorted(
        (
            str(s.get("Effect")),
            listed(s.get("Action")),
            listed(s.get("Resource")),
            listed(k for k, v in s.items() if k not in ("Effect", "Action", "Resource", "Sid") and v),
        )
        for s in doc.get("Statement") or []
    )
