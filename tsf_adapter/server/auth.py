"""Who may talk to the daemon: an ``Authorization`` header checked against the web config's
bcrypt users and bearer token.

bcrypt is slow on purpose (tens of ms at cost 10), and a Prometheus remote-writing with many
shards presents the same credentials many times a second: a pair that verified once is
remembered, as exporter-toolkit does, under a keyed hash of the pair (never the password
itself), in a bounded LRU. Requests that arrive together with the same new pair share one bcrypt
check. Failures are not remembered: each wrong guess costs a bcrypt run, which is the point.
bcrypt runs in a thread (it releases the GIL), never on the event loop.

An unknown user is checked against a configured hash all the same, so that the time taken does
not tell which user names exist; the answer to every failure is the same.
"""

from __future__ import annotations

import asyncio
import binascii
import hashlib
import hmac
import os
from collections import OrderedDict
from collections.abc import Mapping
from typing import Final

import bcrypt

# Distinct credential pairs remembered; a handful of senders use a handful of pairs, and the
# bound keeps a client that cycles through many pairs from growing the memory.
CACHE_SIZE: Final = 256


class Authenticator:
    """Checks ``Authorization`` header values; one per loaded web config.

    >>> import asyncio, bcrypt
    >>> auth = Authenticator({"prom": bcrypt.hashpw(b"secret", bcrypt.gensalt(4)).decode()}, None)
    >>> asyncio.run(auth.check("Basic cHJvbTpzZWNyZXQ="))  # prom:secret
    True
    >>> asyncio.run(auth.check("Basic cHJvbTp3cm9uZw=="))  # prom:wrong
    False
    """

    def __init__(
        self, users: Mapping[str, str], bearer_token: bytes | None, *, cache_size: int = CACHE_SIZE
    ) -> None:
        self._users = {user.encode(): hashed.encode() for user, hashed in users.items()}
        # Any real hash serves as the decoy for unknown users: same cost, same time.
        self._decoy = next(iter(self._users.values()), None)
        self._token = bearer_token
        self._cache_size = cache_size
        self._verified: OrderedDict[bytes, None] = OrderedDict()
        self._pending: dict[bytes, asyncio.Future[bool]] = {}
        # Keys the cache's hashes, so that the cache holds nothing a password can be guessed from
        # offline faster than from the bcrypt hashes in the config.
        self._salt = os.urandom(32)

    @property
    def schemes(self) -> tuple[str, ...]:
        """The schemes a client may use, for ``WWW-Authenticate``."""
        return (("Basic",) if self._users else ()) + (("Bearer",) if self._token else ())

    async def check(self, authorization: str | None) -> bool:
        """Whether the header value proves a configured user or the token."""
        if authorization is None:
            return False
        scheme, _, credentials = authorization.strip().partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer" and self._token is not None:
            return self._check_token(credentials.strip())
        if scheme == "basic" and self._decoy is not None:
            pair = _basic_pair(credentials.strip())
            return pair is not None and await self._check_basic(*pair)
        return False

    def _check_token(self, presented: str) -> bool:
        assert self._token is not None
        try:
            candidate = presented.encode()
        except UnicodeEncodeError:
            return False
        return hmac.compare_digest(candidate, self._token)

    async def _check_basic(self, user: bytes, password: bytes) -> bool:
        # A user name holds no ':', so user:password splits one way only.
        key = hashlib.blake2b(user + b":" + password, key=self._salt).digest()
        if key in self._verified:
            self._verified.move_to_end(key)
            return True
        pending = self._pending.get(key)
        if pending is None:
            pending = asyncio.ensure_future(asyncio.to_thread(self._verify, user, password))
            self._pending[key] = pending
            pending.add_done_callback(lambda _: self._pending.pop(key, None))
        # Shielded: a client that hangs up must not cancel the check others are waiting on.
        ok = await asyncio.shield(pending)
        if ok:
            self._verified[key] = None
            self._verified.move_to_end(key)
            while len(self._verified) > self._cache_size:
                self._verified.popitem(last=False)
        return ok

    def _verify(self, user: bytes, password: bytes) -> bool:
        """bcrypt, in a worker thread; an unknown user costs the same as a known one."""
        stored = self._users.get(user)
        assert self._decoy is not None
        try:
            matches = bcrypt.checkpw(password, stored if stored is not None else self._decoy)
        except ValueError:  # a password over bcrypt's 72 bytes can match nothing
            return False
        return matches and stored is not None


def _basic_pair(credentials: str) -> tuple[bytes, bytes] | None:
    """``(user, password)`` from base64 ``user:password``, or None when it is not that."""
    try:
        decoded = binascii.a2b_base64(credentials.encode("ascii"), strict_mode=True)
    except (UnicodeEncodeError, binascii.Error):
        return None
    user, colon, password = decoded.partition(b":")
    return (user, password) if colon else None
