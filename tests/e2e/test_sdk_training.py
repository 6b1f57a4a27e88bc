"""Tier 3: the kubeflow-training SDK from PyPI (`TrainingClient`), run in its own virtualenv as
a notebook with its ServiceAccount token, against the API server with the warden's webhooks.

No training-operator runs here: where the SDK waits for a Job's conditions, the test writes
them through the status subresource as the operator would, with a privileged identity.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from kubernetes import client as k8s

from kaptain_warden.testing.controlplane import ControlPlane
from kaptain_warden.testing.notebook import Notebook
from notebook_kit import KEYS, actions, assert_stamped, read, sweep_preview, write_status

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("sdk_envs")]

SEVEN_DAYS = int(timedelta(days=7).total_seconds())

CREATE = """
from kubeflow.training import TrainingClient, models
from kubernetes.client import V1Container, V1ObjectMeta, V1PodSpec, V1PodTemplateSpec

client = TrainingClient(namespace=NAMESPACE)
# The SDK builds the TFJob itself from an image (Chief-less, one PS, two Workers).
client.create_job(
    name="mnist",
    job_kind="TFJob",
    base_image="docker.io/kubeflow/tf-mnist-with-summaries:latest",
    num_workers=2,
    num_ps_replicas=1,
)
# A PyTorchJob the user builds from the SDK's models, as the training-operator examples do.
template = V1PodTemplateSpec(
    spec=V1PodSpec(
        containers=[
            V1Container(name="pytorch", image="docker.io/kubeflow/pytorch-dist-mnist:latest")
        ]
    )
)
client.create_job(
    job=models.KubeflowOrgV1PyTorchJob(
        api_version="kubeflow.org/v1",
        kind="PyTorchJob",
        metadata=V1ObjectMeta(name="bert", labels={"team": "nlp"}),
        spec=models.KubeflowOrgV1PyTorchJobSpec(
            run_policy=models.KubeflowOrgV1RunPolicy(clean_pod_policy="None"),
            pytorch_replica_specs={
                "Master": models.KubeflowOrgV1ReplicaSpec(
                    replicas=1, restart_policy="OnFailure", template=template
                ),
                "Worker": models.KubeflowOrgV1ReplicaSpec(
                    replicas=1, restart_policy="OnFailure", template=template
                ),
            },
        ),
    )
)
"""

# update_job sends a merge patch of the object it is given: first the object as read (every
# key the server stamped included), then one the user builds afresh (none of them).
UPDATE = """
job = client.get_job("mnist", job_kind="TFJob")
job.metadata.labels = {**(job.metadata.labels or {}), "stage": "tuned"}
job.spec.tf_replica_specs["Worker"].replicas = 3
client.update_job(job, "mnist", job_kind="TFJob")

client.update_job(
    models.KubeflowOrgV1PyTorchJob(
        api_version="kubeflow.org/v1",
        kind="PyTorchJob",
        metadata=V1ObjectMeta(name="bert", labels={"team": "nlp", "stage": "tuned"}),
        spec=models.KubeflowOrgV1PyTorchJobSpec(
            run_policy=models.KubeflowOrgV1RunPolicy(clean_pod_policy="None"),
            pytorch_replica_specs={
                "Master": models.KubeflowOrgV1ReplicaSpec(
                    replicas=1, restart_policy="OnFailure", template=template
                ),
                "Worker": models.KubeflowOrgV1ReplicaSpec(
                    replicas=2, restart_policy="OnFailure", template=template
                ),
            },
        ),
    ),
    "bert",
    job_kind="PyTorchJob",
)
"""

WAIT = """
result = client.wait_for_job_conditions(
    "mnist", job_kind="TFJob", expected_conditions={"Succeeded"}, polling_interval=1,
    wait_timeout=120,
)
"""

GET = """
result = {
    "mnist": client.get_job("mnist", job_kind="TFJob"),
    "bert": client.get_job("bert", job_kind="PyTorchJob"),
    "succeeded": client.is_job_succeeded("mnist", job_kind="TFJob"),
}
"""


def job_path(namespace: str, plural: str, name: str) -> str:
    return f"/apis/kubeflow.org/v1/namespaces/{namespace}/{plural}/{name}"


def succeeded_status(at: datetime) -> dict[str, object]:
    """What the training-operator writes when every replica succeeded (its JobStatus)."""
    when = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "conditions": [
            {
                "type": kind,
                "status": "True" if kind == "Succeeded" else "False",
                "reason": f"TFJob{kind}",
                "message": f"TFJob mnist is {kind.lower()}.",
                "lastUpdateTime": when,
                "lastTransitionTime": when,
            }
            for kind in ("Created", "Running", "Succeeded")
        ],
        "replicaStatuses": {"PS": {"succeeded": 1}, "Worker": {"succeeded": 3}},
        "startTime": when,
        "completionTime": when,
    }


def test_training_client_creates_updates_and_waits_as_the_notebook(
    token_notebook: Notebook, kube_admin: k8s.ApiClient, control_plane: ControlPlane
) -> None:
    notebook = token_notebook
    namespace = notebook.namespace
    tfjob = job_path(namespace, "tfjobs", "mnist")
    pytorchjob = job_path(namespace, "pytorchjobs", "bert")
    started = datetime.now(UTC)

    with notebook.kernel("training") as kernel:
        kernel.run(f"NAMESPACE = {namespace!r}")
        kernel.run(CREATE)
        stamps = {
            path: assert_stamped(
                read(kube_admin, path),
                rule="training-jobs",
                owner=notebook.user,
                not_before=started,
            )
            for path in (tfjob, pytorchjob)
        }
        for path in (tfjob, pytorchjob):
            created = read(kube_admin, path)
            assert created["metadata"]["annotations"][KEYS.ttl_after_finished] == "7d"
            # The rule's completion TTL is mirrored into the operator's own field.
            assert created["spec"]["runPolicy"]["ttlSecondsAfterFinished"] == SEVEN_DAYS

        kernel.run(UPDATE)
        for path in (tfjob, pytorchjob):
            updated = read(kube_admin, path)
            assert updated["metadata"]["labels"]["stage"] == "tuned"
            restamped = assert_stamped(
                updated, rule="training-jobs", owner=notebook.user, not_before=started
            )
            assert restamped == stamps[path]
            assert updated["spec"]["runPolicy"]["ttlSecondsAfterFinished"] == SEVEN_DAYS
        tf_workers = read(kube_admin, tfjob)["spec"]["tfReplicaSpecs"]["Worker"]
        assert tf_workers["replicas"] == 3
        pytorch_workers = read(kube_admin, pytorchjob)["spec"]["pytorchReplicaSpecs"]["Worker"]
        assert pytorch_workers["replicas"] == 2

        # The SDK polls; the test plays the training-operator and reports success.
        kernel.submit(WAIT)
        finished = datetime.now(UTC).replace(microsecond=0)
        write_status(kube_admin, tfjob, succeeded_status(finished))
        waited = kernel.answer()
        assert waited["metadata"]["name"] == "mnist"
        assert waited["status"]["conditions"][-1]["type"] == "Succeeded"

        got = kernel.run(GET)
        assert got["succeeded"] is True
        for name, path in (("mnist", tfjob), ("bert", pytorchjob)):
            # What the SDK reads back is what the warden stamped at creation, unchanged.
            assert {
                key: value
                for key, value in got[name]["metadata"]["labels"].items()
                if key.startswith(KEYS.prefix)
            } == {
                key.removeprefix("label:"): value
                for key, value in stamps[path].items()
                if key.startswith("label:")
            }

    now = sweep_preview(control_plane, namespace)
    assert actions(now) == {"TFJob/mnist": "keep", "PyTorchJob/bert": "keep"}
    # ttl-after-finished 7d counts from the completion the test wrote; the running job stays.
    assert actions(sweep_preview(control_plane, namespace, "+6d")) == actions(now)
    later = sweep_preview(control_plane, namespace, "+8d")
    assert actions(later) == {"TFJob/mnist": "delete", "PyTorchJob/bert": "keep"}
    assert later["TFJob/mnist"]["owner"] == notebook.user
