"""Tier 3: the kserve SDK from PyPI (`KServeClient`), run in its own virtualenv as a notebook
with its ServiceAccount token, against the API server with the warden's webhooks.

No KServe controller runs here: where the SDK watches for the InferenceService to be ready
(`create(watch=True)`, `replace(watch=True)`), the test writes the status through the status
subresource as the controller would, with a privileged identity.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes import client as k8s

from kaptain_warden.kube.errors import ApiError
from kaptain_warden.testing.controlplane import ControlPlane
from kaptain_warden.testing.notebook import Notebook
from notebook_kit import (
    KEYS,
    SYSTEM_ANNOTATIONS,
    SYSTEM_LABELS,
    actions,
    assert_stamped,
    expected_expiry,
    read,
    sweep_preview,
    warden_metadata,
    write_status,
)
from polling import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("sdk_envs")]

SERVICE_ACCOUNT = "kserve-service-credentials"  # the SDK's default

# set_credentials reads an AWS credentials file, creates a Secret (generateName) and creates
# the ServiceAccount naming it, or, when it exists, patches the Secret into it.
CREDENTIALS = """
import pathlib, tempfile
from kserve import KServeClient

client = KServeClient()
with tempfile.TemporaryDirectory() as home:
    aws = pathlib.Path(home) / "credentials"
    # AWS's documented example keys. The SDK puts the values into the Secret's `data` as they
    # are, unencoded: only values that happen to be valid base64, as AWS keys are, get through.
    aws.write_text(
        "[default]\\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\\n"
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\\n"
    )
    for _ in range(2):  # the second call is a credentials rotation: the patch path
        client.set_credentials(
            storage_type="S3", namespace=NAMESPACE, credentials_file=str(aws),
            s3_endpoint="minio-service.kubeflow:9000", s3_use_https="0", s3_verify_ssl="0",
        )
"""

MODELS = """
import contextlib, io
from kubernetes.client import V1ObjectMeta
from kserve import (
    V1beta1InferenceService, V1beta1InferenceServiceSpec, V1beta1ModelFormat, V1beta1ModelSpec,
    V1beta1PredictorSpec,
)

def isvc(version, annotations=None, min_replicas=None):
    return V1beta1InferenceService(
        api_version="serving.kserve.io/v1beta1",
        kind="InferenceService",
        metadata=V1ObjectMeta(name="sklearn-iris", namespace=NAMESPACE, annotations=annotations),
        spec=V1beta1InferenceServiceSpec(
            predictor=V1beta1PredictorSpec(
                service_account_name="kserve-service-credentials",
                min_replicas=min_replicas,
                model=V1beta1ModelSpec(
                    model_format=V1beta1ModelFormat(name="sklearn"),
                    storage_uri=f"s3://models/iris/{version}",
                ),
            )
        ),
    )

def watched(call):
    # The SDK's watch prints a table row per event it sees; the last one says Ready.
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        call()
    return out.getvalue()
"""

# The notebook asks for a 3-day lifetime when it deploys; its redeploy cell does not repeat it.
CREATE = """
result = watched(lambda: client.create(
    isvc("v1", annotations={"warden.kaptain.io/ttl": "3d"}), watch=True, timeout_seconds=120
))
"""
REPLACE = """
result = watched(lambda: client.replace(
    "sklearn-iris", isvc("v2"), watch=True, timeout_seconds=120
))
"""
# A patch that scales the predictor and extends the lifetime to 5 days.
PATCH = """
longer = isvc("v2", annotations={"warden.kaptain.io/ttl": "5d"}, min_replicas=2)
client.patch("sklearn-iris", longer)
result = client.get("sklearn-iris", namespace=NAMESPACE)
"""


def ready_status(namespace: str, generation: int, revision: int) -> dict[str, Any]:
    """What KServe writes once the predictor's Revision is ready (serverless mode)."""
    when = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    name = f"sklearn-iris-predictor-{revision:05d}"
    url = f"http://sklearn-iris.{namespace}.example.com"
    return {
        "observedGeneration": generation,
        "url": url,
        "address": {"url": f"http://sklearn-iris.{namespace}.svc.cluster.local"},
        "conditions": [
            {"type": kind, "status": "True", "lastTransitionTime": when}
            for kind in ("IngressReady", "PredictorReady", "Ready")
        ],
        "components": {
            "predictor": {
                "latestCreatedRevision": name,
                "latestReadyRevision": name,
                "url": f"http://sklearn-iris-predictor.{namespace}.example.com",
                "traffic": [{"latestRevision": True, "percent": 100, "revisionName": name}],
            }
        },
    }


def generation_of(kube_admin: k8s.ApiClient, path: str, wanted: int) -> bool:
    try:
        return read(kube_admin, path)["metadata"].get("generation") == wanted
    except ApiError as error:
        if error.status == 404:
            return False
        raise


def system_keys(obj: dict[str, Any]) -> dict[str, str]:
    meta = obj["metadata"]
    found = {f"label:{k}": meta["labels"][k] for k in SYSTEM_LABELS if k in meta["labels"]}
    found.update(
        (f"annotation:{k}", meta["annotations"][k])
        for k in SYSTEM_ANNOTATIONS
        if k in meta["annotations"]
    )
    return found


def test_kserve_client_deploys_redeploys_and_patches_as_the_notebook(
    token_notebook: Notebook, kube_admin: k8s.ApiClient, control_plane: ControlPlane
) -> None:
    notebook = token_notebook
    namespace = notebook.namespace
    core = f"/api/v1/namespaces/{namespace}"
    isvc = f"/apis/serving.kserve.io/v1beta1/namespaces/{namespace}/inferenceservices/sklearn-iris"
    started = datetime.now(UTC)

    with notebook.kernel("kserve") as kernel:
        kernel.run(f"NAMESPACE = {namespace!r}")

        kernel.run(CREDENTIALS)
        account = read(kube_admin, f"{core}/serviceaccounts/{SERVICE_ACCOUNT}")
        held = [ref["name"] for ref in account["secrets"]]
        assert len(held) == 2, account  # created with the first, patched with the second
        assert warden_metadata(account) == {}  # no rule governs ServiceAccounts
        for name in held:
            secret = read(kube_admin, f"{core}/secrets/{name}")
            assert name.startswith("kserve-secret-")
            assert secret["metadata"]["annotations"]["serving.kserve.io/s3-endpoint"] == (
                "minio-service.kubeflow:9000"
            )
            assert_stamped(
                secret, rule="credentials-secrets", owner=notebook.user, not_before=started
            )
            assert secret["metadata"]["annotations"][KEYS.ttl] == "1d"
            assert secret["metadata"]["annotations"][KEYS.expires_at] == expected_expiry(
                secret, timedelta(days=1)
            )

        kernel.run(MODELS)
        # create(watch=True) blocks until the InferenceService reports Ready.
        kernel.submit(CREATE)
        eventually(lambda: generation_of(kube_admin, isvc, 1), "the InferenceService")
        write_status(kube_admin, isvc, ready_status(namespace, generation=1, revision=1))
        table = kernel.answer()
        assert table.splitlines()[-1].split()[:2] == ["sklearn-iris", "True"], table
        created = read(kube_admin, isvc)
        stamps = assert_stamped(
            created, rule="inference-services", owner=notebook.user, not_before=started
        )
        assert created["metadata"]["annotations"][KEYS.ttl] == "3d"
        assert created["metadata"]["annotations"][KEYS.expires_at] == expected_expiry(
            created, timedelta(days=3)
        )

        # The redeploy: the user's own manifest (no warden key in it) with a new model version,
        # sent whole with the resourceVersion the SDK looked up. replace(watch=True) then
        # waits for the controller to observe the new generation.
        kernel.submit(REPLACE)
        eventually(lambda: generation_of(kube_admin, isvc, 2), "the replaced InferenceService")
        write_status(kube_admin, isvc, ready_status(namespace, generation=2, revision=2))
        table = kernel.answer()
        assert table.splitlines()[-1].split()[:2] == ["sklearn-iris", "True"], table
        replaced = read(kube_admin, isvc)
        assert replaced["spec"]["predictor"]["model"]["storageUri"] == "s3://models/iris/v2"
        # Every warden key survives, the user's ttl included: absent is not a removal.
        assert (
            assert_stamped(
                replaced, rule="inference-services", owner=notebook.user, not_before=started
            )
            == stamps
        )

        patched = kernel.run(PATCH)
        assert patched["spec"]["predictor"]["minReplicas"] == 2
        assert system_keys(patched) == system_keys(created) | {
            f"annotation:{KEYS.expires_at}": expected_expiry(created, timedelta(days=5))
        }
        assert patched["metadata"]["annotations"][KEYS.ttl] == "5d"

    now = sweep_preview(control_plane, namespace)
    secrets = {f"Secret/{name}" for name in held}
    assert actions(now) == {"InferenceService/sklearn-iris": "keep"} | dict.fromkeys(
        secrets, "keep"
    )
    # In two days the Secrets' own TTL (1d) has run out, but the ServiceAccount an
    # InferenceService deploys with still names them: kept, and the report says why.
    later = sweep_preview(control_plane, namespace, "+2d")
    assert actions(later) == actions(now)
    for key in secrets:
        assert f"ServiceAccount/{SERVICE_ACCOUNT}" in later[key]["reason"], later[key]
    # The 5-day lifetime the notebook set by the patch is what the sweeper acts on.
    gone = sweep_preview(control_plane, namespace, "+6d")
    assert gone["InferenceService/sklearn-iris"]["action"] == "delete"
