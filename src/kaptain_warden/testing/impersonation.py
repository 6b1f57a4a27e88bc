"""Impersonation: an API client whose requests the API server authorizes as another user."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import urllib3
from kubernetes import client as k8s

__all__ = ["impersonating_api_client"]


class _ImpersonatingPoolManager:
    """Wraps a urllib3 pool manager to send one `Impersonate-Group` header line per group.

    A default header of the generated client holds one value, and the API server takes each
    `Impersonate-Group` line as one group (it does not split on commas), so several groups need
    several lines: urllib3 sends each value of an `HTTPHeaderDict` on its own line.
    """

    def __init__(self, inner: urllib3.PoolManager, groups: Sequence[str]) -> None:
        self._inner = inner
        self._groups = tuple(groups)

    def request(self, method: str, url: str, **kwargs: Any) -> Any:
        headers = urllib3.HTTPHeaderDict(kwargs.get("headers") or {})
        headers.discard("Impersonate-Group")
        for group in self._groups:
            headers.add("Impersonate-Group", group)
        kwargs["headers"] = headers
        return self._inner.request(method, url, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def impersonating_api_client(
    configuration: k8s.Configuration, user: str, groups: Iterable[str] = ()
) -> k8s.ApiClient:
    """A new ApiClient (for an identity allowed to impersonate) whose requests impersonate
    `user` in `groups`.

    It sends `Impersonate-User` and one `Impersonate-Group` header per group; the API server
    then authorizes the request as that user. Note: impersonating with no group gives the user
    only `system:authenticated`.
    """
    api_client = k8s.ApiClient(configuration)
    api_client.default_headers["Impersonate-User"] = user
    group_list = list(groups)
    if group_list:
        rest_client = api_client.rest_client
        # A duck-typed stand-in: the REST client only calls `request` on it.
        rest_client.pool_manager = _ImpersonatingPoolManager(  # type: ignore[assignment]
            rest_client.pool_manager, group_list
        )
    return api_client
