"""Tier 3: custom resources are read as streaming lists (a watch that begins with the
collection's objects) against a real API server: the same objects as a paginated list, in one
request, the watch closed once they are in, allowed by the sweeper's generated RBAC; where the
API server has streaming lists off (1.30), lists in pages after one refusal."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from kubernetes import client as k8s

from kaptain_warden.install.rbac import sweeper_cluster_rules
from kaptain_warden.kube.api import KubeApi
from kaptain_warden.kube.client import load_api_client, request_json
from kaptain_warden.kube.errors import ApiError
from kaptain_warden.kube.listing import ListRequest, list_all
from kube_versions import streams_lists
from polling import eventually
from sweeper_kit import HOUR, body, create, now, policy_for_tests, user_with_rules

pytestmark = pytest.mark.e2e

POLICY = policy_for_tests()


class CountingApi(KubeApi):
    """The real door, counting requests by how they were sent (GET or a stream)."""

    def __init__(self, api_client: k8s.ApiClient, *, streams: bool = True) -> None:
        super().__init__(api_client, timeout=10.0)
        self.streams_lists = streams
        self.sent: Counter[str] = Counter()

    def request(self, method: str, path: str, **kw: Any) -> Any:
        self.sent[method] += 1
        return super().request(method, path, **kw)

    def stream(self, path: str, **kw: Any) -> Any:
        self.sent["STREAM"] += 1
        return super().stream(path, **kw)


def revisions(namespace: str, **kw: Any) -> ListRequest:
    return ListRequest(
        api_version="serving.knative.dev/v1",
        kind="Revision",
        resource="revisions",
        label_selector=POLICY.keys.managed_selector,
        page_size=2,  # several pages for the paginated list it is compared with
        **kw,
    )


def seen(items: list[dict[str, Any]], namespace: str) -> set[tuple[str, str, str]]:
    return {
        (i["metadata"]["name"], i["metadata"]["resourceVersion"], i["kind"])
        for i in items
        if i["metadata"]["namespace"] == namespace
    }


def open_watches(api: k8s.ApiClient, resource: str) -> float:
    """How many watches of `resource` the API server is serving now (its own gauge)."""
    s = api.param_serialize("GET", "/metrics", header_params={"Accept": "text/plain"})
    text = api.call_api(*s).read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("apiserver_longrunning_requests{")
        and f'resource="{resource}"' in line
        and 'verb="WATCH"' in line
    )


@pytest.fixture
def made(kube_admin, namespace):
    t = now()
    for n in range(5):
        create(
            kube_admin, namespace, body("serving.knative.dev/v1", "Revision", f"r{n}", expires=t)
        )
    # Not managed: the label selector leaves it out of both lists.
    create(
        kube_admin,
        namespace,
        body("serving.knative.dev/v1", "Revision", "plain", managed=None, expires=t + HOUR),
    )
    return namespace


def test_a_streamed_list_has_the_objects_of_a_paginated_one_in_one_request(
    kube_admin, made, kube_version
):
    streamed = CountingApi(kube_admin)
    paged = CountingApi(kube_admin, streams=False)
    for cluster_wide in (True, False):
        kw = {} if cluster_wide else {"namespaces": (made,)}
        by_stream = list_all(streamed, revisions(made, **kw))
        by_pages = list_all(paged, revisions(made, **kw))
        assert seen(by_stream, made) == seen(by_pages, made)
        assert {name for name, _, _ in seen(by_stream, made)} == {f"r{n}" for n in range(5)}
        # Metadata only, managedFields dropped, apiVersion and kind set, as from pages.
        item = next(i for i in by_stream if i["metadata"]["namespace"] == made)
        assert set(item) == {"apiVersion", "kind", "metadata"}
        assert "managedFields" not in item["metadata"]
    assert paged.sent == Counter({"GET": paged.sent["GET"]}) and paged.sent["GET"] >= 6
    if streams_lists(kube_version):
        assert streamed.sent == Counter({"STREAM": 2})
        assert streamed.streams_lists
    else:
        # Refused once (the WatchList feature is off), then in pages like the other.
        assert streamed.sent["STREAM"] == 1 and streamed.sent["GET"] == paged.sent["GET"]
        assert not streamed.streams_lists


def test_the_watch_is_closed_once_the_objects_are_in(control_plane, kube_admin, made):
    # Its own connections: a connection the lists left in the shared pool with a watch still
    # on it would be found and closed by the next request through that pool.
    observer = load_api_client(str(control_plane.kubeconfig_path))
    before = open_watches(observer, "revisions")
    api = CountingApi(kube_admin)
    for _ in range(3):
        assert len(seen(list_all(api, revisions(made)), made)) == 5
    # The API server ends a watch when its client closes the connection: none of ours is open.
    eventually(lambda: open_watches(observer, "revisions") <= before, "our watches to end")


def test_the_sweepers_generated_rbac_allows_the_streamed_lists(
    control_plane, kube_admin, made, kube_version
):
    with (
        user_with_rules(kube_admin, "streams", sweeper_cluster_rules(POLICY)) as name,
        control_plane.impersonating_api_client(name, ["system:authenticated"]) as client,
    ):

        def authorized() -> bool:  # RBAC caches take a moment to see a new binding
            try:
                request_json(
                    client, "GET", f"/apis/serving.knative.dev/v1/namespaces/{made}/revisions"
                )
            except ApiError:
                return False
            return True

        eventually(authorized, "the new ClusterRoleBinding to take effect")
        api = CountingApi(client)
        assert len(seen(list_all(api, revisions(made)), made)) == 5
        if streams_lists(kube_version):
            assert api.sent == Counter({"STREAM": 1})  # watch allowed: no 403, no pages
            assert api.streams_lists
