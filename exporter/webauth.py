"""HTTP Basic authentication against the web config's bcrypt hashes, and its response headers.

bcrypt is slow on purpose (about 50 ms at cost 10), so a scrape must not pay it every time: a
verified (user, password) pair is cached under a SHA-256 of the user, the hash and the password.
The key includes the password: exporter-toolkit's CVE-2022-46146 came from a cache keyed without
it, which let any password through once the right one had been seen. Only successes are cached,
so wrong guesses cannot push Prometheus's entry out of the bounded cache; each one costs a
bcrypt run, one at a time, in a worker thread so the event loop keeps serving.

An unknown user is checked against a configured hash of the highest cost, and then refused, so
the time taken does not tell which user names exist.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection, Mapping

import bcrypt
from aiohttp import hdrs, web

__all__ = [
    "DEFAULT_EXEMPT_PATHS",
    "BasicAuth",
    "add_response_headers",
    "basic_auth_middleware",
]

# The probes, and the webhook that remediation.auth guards with what Alertmanager sends.
DEFAULT_EXEMPT_PATHS = ("/-/healthy", "/-/ready", "/webhook/alertmanager")
# bcrypt (pyca 5) refuses longer passwords instead of silently truncating them.
_BCRYPT_MAX_PASSWORD_BYTES = 72

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Middleware = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]


def _credentials(authorization: str | None) -> tuple[str, bytes] | None:
    """(user, password) from an ``Authorization: Basic ...`` header, None when malformed."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True)
        user, separator, password = decoded.partition(b":")
        if not separator:
            return None
        return user.decode("utf-8"), password
    except (binascii.Error, ValueError):  # bad base64, or a user name that is not UTF-8
        return None


def _cost(hashed: bytes) -> int:
    return int(hashed[4:6])


def _cache_key(user: str, hashed: bytes, password: bytes) -> bytes:
    digest = hashlib.sha256()
    # Length prefixes, so no two different triples can make the same input.
    for part in (user.encode("utf-8"), hashed, password):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.digest()


class BasicAuth:
    """Checks Basic credentials against ``{user: bcrypt hash}``; caches verified pairs.

    :attr:`verifications` counts bcrypt runs, so a benchmark or test can show the cache working.
    ``checkpw`` is bcrypt's; it runs in a worker thread.
    """

    def __init__(
        self,
        users: Mapping[str, str],
        *,
        cache_size: int = 1024,
        checkpw: Callable[[bytes, bytes], bool] = bcrypt.checkpw,
    ) -> None:
        if not users:
            raise ValueError("basic auth needs at least one user")
        self._users = {user: hashed.encode("ascii") for user, hashed in users.items()}
        self._decoy = max(self._users.values(), key=_cost)
        self._checkpw = checkpw
        self._cache: OrderedDict[bytes, None] = OrderedDict()
        self._cache_size = cache_size
        # One bcrypt run at a time, as the toolkit does: a flood of guesses queues here instead
        # of taking every worker thread.
        self._lock = asyncio.Lock()
        self.verifications = 0

    async def authenticate(self, authorization: str | None) -> str | None:
        """The user name when the ``Authorization`` header holds valid credentials, else None."""
        credentials = _credentials(authorization)
        if credentials is None:
            return None
        user, password = credentials
        hashed = self._users.get(user)
        known = hashed is not None
        key = _cache_key(user, hashed or self._decoy, password)
        if self._cached(key):
            return user
        async with self._lock:
            if self._cached(key):  # verified while this request waited for the lock
                return user
            verified = await asyncio.to_thread(self._verify, hashed or self._decoy, password)
            self.verifications += 1
        if not (known and verified):
            return None
        self._cache[key] = None
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return user

    def _cached(self, key: bytes) -> bool:
        if key not in self._cache:
            return False
        self._cache.move_to_end(key)
        return True

    def _verify(self, hashed: bytes, password: bytes) -> bool:
        # A too-long password still costs one full check, so its refusal takes the usual time.
        try:
            matches = self._checkpw(password[:_BCRYPT_MAX_PASSWORD_BYTES], hashed)
        except ValueError:  # a hash bcrypt cannot read; the web config validation prevents it
            return False
        return matches and len(password) <= _BCRYPT_MAX_PASSWORD_BYTES


def basic_auth_middleware(
    users: Mapping[str, str] | BasicAuth,
    exempt_paths: Collection[str] = DEFAULT_EXEMPT_PATHS,
) -> Middleware:
    """An aiohttp middleware answering 401 (``WWW-Authenticate: Basic``) without valid credentials.

    Requests whose path is exactly one of ``exempt_paths`` pass without credentials. Pass a
    :class:`BasicAuth` instead of the users to read its :attr:`BasicAuth.verifications`.
    """
    auth = users if isinstance(users, BasicAuth) else BasicAuth(users)
    exempt = frozenset(exempt_paths)

    @web.middleware
    async def check_basic_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in exempt:
            return await handler(request)
        if await auth.authenticate(request.headers.get(hdrs.AUTHORIZATION)) is None:
            return web.Response(
                status=401, text="Unauthorized\n", headers={hdrs.WWW_AUTHENTICATE: "Basic"}
            )
        return await handler(request)

    return check_basic_auth


def add_response_headers(app: web.Application, headers: Mapping[str, str]) -> None:
    """Add ``http_server_config.headers`` to every response ``app`` sends.

    A response-prepare hook rather than a middleware, so 401s, 404s, errors and streamed
    responses get them too. A header the handler set itself wins, as with the toolkit.
    """
    configured = dict(headers)
    if not configured:
        return

    async def set_headers(_request: web.Request, response: web.StreamResponse) -> None:
        for name, value in configured.items():
            response.headers.setdefault(name, value)

    app.on_response_prepare.append(set_headers)
