"""The CLI's changes to a store that a running server owns, made through that server's HTTP API.

`changing()` decides: no live owner, the change is made directly under the owner lock; a live
owner, it goes to that server. `RemoteManager` has PackageManager's mutating methods with the
same return values (over `client.RunnerClient`), so the CLI prints the server's answer exactly
as it prints its own. The server is first asked `/healthz` within a short deadline (a stopped
or hung server is refused at once, by name); the change itself then gets the long deadline a
venv build or a warm-up needs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from procvision_algorithm_sdk.errors import INVALID_PARAMS, UNKNOWN_ERROR

from .config import ConfigFileError, read_config_file
from .store.lock import StoreError
from .store.owner import OwnerRecord, change_access
from .store.progress import ProgressFn

if TYPE_CHECKING:  # the client (numpy, HTTP) loads only when a server owns the store
    from .client import RunnerClient

__all__ = ["TOKEN_ENV", "RemoteManager", "changing", "token_from"]

TOKEN_ENV = "PROCVISION_TOKEN"
_POLL_S = 0.3  # how often the CLI asks the server how its install job goes


def token_from(config_path: str | Path | None) -> str | None:
    """The service token: `[service] token` of the config file, else $PROCVISION_TOKEN."""
    token: object = None
    if config_path is not None:
        try:
            section = read_config_file(config_path).get("service", {})
        except ConfigFileError as exc:
            raise StoreError(INVALID_PARAMS, str(exc)) from exc
        if isinstance(section, dict):
            token = section.get("token")
    if not token:
        token = os.environ.get(TOKEN_ENV)
    return token if isinstance(token, str) and token else None


class RemoteManager:
    """PackageManager's changes (install ... uninstall), answered by the owning server."""

    def __init__(
        self,
        owner: OwnerRecord,
        token: str | None,
        *,
        reach_timeout_s: float = 5.0,
        call_timeout_s: float = 1800.0,
    ) -> None:
        self.owner = owner
        self.reach_timeout_s = reach_timeout_s
        self.call_timeout_s = call_timeout_s
        self._token = token

    def install(
        self,
        zip_path: str | Path,
        *,
        replace: bool = False,
        keep_bundled_sdk: bool = False,
        progress: ProgressFn | None = None,
    ) -> dict:
        """Upload a zip to the server's install, run as a job whose steps `progress` hears of."""
        flags = {"replace": replace, "keep_bundled_sdk": keep_bundled_sdk}
        return self._call(
            "install",
            lambda c: self._follow(c, c.install(zip_path, **flags, background=True), progress),
        )

    def _follow(
        self, client: RunnerClient, job: dict[str, Any], progress: ProgressFn | None
    ) -> dict:
        """Poll a job until it ends (within call_timeout_s), passing its new log lines on."""
        if "job_id" not in job:  # a server without jobs installed synchronously: the entry
            return job
        deadline = time.monotonic() + self.call_timeout_s
        seen = 0
        while True:
            job = client.job(str(job["job_id"]))
            for line in job.get("log") or []:
                if progress is not None and int(line.get("seq", 0)) > seen:
                    progress(str(line.get("phase")), str(line.get("message")))
                seen = max(seen, int(line.get("seq", 0)))
            if job.get("status") == "succeeded":
                return dict(job.get("result") or {})
            if job.get("status") == "failed":
                error = job.get("error") or {}
                raise StoreError(
                    str(error.get("error_code") or UNKNOWN_ERROR), str(error.get("message"))
                )
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job['job_id']} still {job.get('phase')}")
            time.sleep(_POLL_S)

    def activate(self, name: str, version: str, pids: list[str]) -> dict:
        """The server's activate."""
        return self._call("activate", lambda c: c.activate(name, version, list(pids)))

    def switch(self, name: str, version: str, pids: list[str]) -> dict:
        """The server's switch."""
        return self._call("switch", lambda c: c.switch(name, version, list(pids)))

    def rollback(self, pid: str) -> dict:
        """The server's rollback."""
        return self._call("rollback", lambda c: c.rollback(pid))

    def deactivate(self, pid: str) -> dict:
        """The server's deactivate."""
        return self._call("deactivate", lambda c: c.deactivate(pid))

    def uninstall(self, name: str, version: str, *, force: bool = False) -> dict:
        """The server's uninstall."""
        return self._call("uninstall", lambda c: c.uninstall(name, version, force=force))

    def _refuse(self, why: str) -> StoreError:
        return StoreError(
            UNKNOWN_ERROR,
            f"the store is owned by {self.owner.describe()}, which {why}; the change was "
            "refused (changes go through the server that owns the store)",
        )

    def _client(self, timeout_s: float) -> RunnerClient:
        from .client import RunnerClient

        return RunnerClient(self.owner.url, self._token, timeout=timeout_s, transport="raw")

    def _call(self, what: str, call: Callable[[RunnerClient], dict[str, Any]]) -> dict:
        from .client import RunnerHTTPError

        with self._client(self.reach_timeout_s) as probe:
            try:
                probe.health()
            except TimeoutError:
                raise self._refuse(f"did not answer in {self.reach_timeout_s:g} s") from None
            except RunnerHTTPError as exc:
                raise self._refuse(f"answered /healthz with HTTP {exc.status}") from None
            except (OSError, ValueError) as exc:
                raise self._refuse(f"cannot be reached ({exc})") from None
        with self._client(self.call_timeout_s) as client:
            try:
                return dict(call(client))
            except RunnerHTTPError as exc:
                if exc.status == 401:
                    raise StoreError(
                        exc.error_code,
                        f"{exc.message} (the token comes from [service] token or ${TOKEN_ENV})",
                    ) from None
                raise StoreError(exc.error_code, exc.message) from None
            except TimeoutError:
                raise self._refuse(
                    f"did not answer the {what} in {self.call_timeout_s:g} s (it may still "
                    "complete it: check with `list`)"
                ) from None
            except (OSError, ValueError) as exc:
                raise self._refuse(f"dropped the {what} ({type(exc).__name__}: {exc})") from None


@contextmanager
def changing(
    root: Path,
    direct: Callable[[], Any],
    *,
    config_path: str | Path | None,
    lock_wait_s: float,
    call_timeout_s: float,
    reach_timeout_s: float,
) -> Iterator[Any]:
    """What a change goes to: `direct()` (a PackageManager) while this process holds the store's
    owner lock, else a RemoteManager on the server that owns the store."""
    with change_access(root, wait_s=lock_wait_s) as owner:
        if owner is None:
            yield direct()
            return
        yield RemoteManager(
            owner,
            token_from(config_path),
            reach_timeout_s=reach_timeout_s,
            call_timeout_s=call_timeout_s,
        )
