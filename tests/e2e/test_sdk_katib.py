"""Tier 3: the kubeflow-katib SDK from PyPI (`KatibClient`), run in its own virtualenv as a
notebook with its ServiceAccount token, against the API server with the warden's webhooks.

No Katib controller runs here: where the SDK waits for the Experiment's condition, the test
writes the status through the status subresource as the controller would, with a privileged
identity.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from kubernetes import client as k8s

from kaptain_warden.testing.controlplane import ControlPlane
from kaptain_warden.testing.notebook import Notebook
from notebook_kit import KEYS, actions, assert_stamped, read, sweep_preview, write_status

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("sdk_envs")]

# The shape of Katib's own random-search example: a batch Job per trial.
CREATE = """
from kubeflow.katib import KatibClient, models
from kubernetes.client import V1ObjectMeta

trial_spec = {
    "apiVersion": "batch/v1",
    "kind": "Job",
    "spec": {
        "template": {
            "spec": {
                "containers": [
                    {
                        "name": "training-container",
                        "image": "docker.io/kubeflowkatib/pytorch-mnist-cpu:latest",
                        "command": [
                            "python3", "/opt/pytorch-mnist/mnist.py", "--epochs=1",
                            "--lr=${trialParameters.learningRate}",
                        ],
                    }
                ],
                "restartPolicy": "Never",
            }
        }
    },
}
experiment = models.V1beta1Experiment(
    api_version="kubeflow.org/v1beta1",
    kind="Experiment",
    metadata=V1ObjectMeta(name="random-lr", namespace=NAMESPACE),
    spec=models.V1beta1ExperimentSpec(
        max_trial_count=3,
        parallel_trial_count=1,
        max_failed_trial_count=1,
        objective=models.V1beta1ObjectiveSpec(
            type="maximize", goal=0.99, objective_metric_name="accuracy"
        ),
        algorithm=models.V1beta1AlgorithmSpec(algorithm_name="random"),
        parameters=[
            models.V1beta1ParameterSpec(
                name="lr",
                parameter_type="double",
                feasible_space=models.V1beta1FeasibleSpace(min="0.01", max="0.05"),
            )
        ],
        trial_template=models.V1beta1TrialTemplate(
            primary_container_name="training-container",
            trial_parameters=[
                models.V1beta1TrialParameterSpec(
                    name="learningRate", description="Learning rate", reference="lr"
                )
            ],
            trial_spec=trial_spec,
        ),
    ),
)
client = KatibClient(namespace=NAMESPACE)
client.create_experiment(experiment)
result = client.get_experiment("random-lr")
"""

# edit_experiment_budget reads the Experiment and sends all of it back as a merge patch.
EDIT = """
client.edit_experiment_budget("random-lr", max_trial_count=5, parallel_trial_count=2)
result = client.get_experiment("random-lr")
"""

WAIT = """
result = client.wait_for_experiment_condition("random-lr", polling_interval=1, timeout=120)
"""


def succeeded_status(at: datetime) -> dict[str, object]:
    """What the Katib controller writes when the goal is reached (its ExperimentStatus)."""
    when = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    conditions = [
        ("Created", "False", "ExperimentCreated"),
        ("Running", "False", "ExperimentRunning"),
        ("Succeeded", "True", "ExperimentGoalReached"),
    ]
    return {
        "conditions": [
            {
                "type": kind,
                "status": status,
                "reason": reason,
                "message": f"Experiment is {kind.lower()}",
                "lastUpdateTime": when,
                "lastTransitionTime": when,
            }
            for kind, status, reason in conditions
        ],
        "startTime": when,
        "completionTime": when,
        "trials": 2,
        "trialsSucceeded": 2,
        "succeededTrialList": ["random-lr-aaaa", "random-lr-bbbb"],
        "currentOptimalTrial": {
            "bestTrialName": "random-lr-aaaa",
            "parameterAssignments": [{"name": "lr", "value": "0.03"}],
            "observation": {
                "metrics": [{"name": "accuracy", "latest": "0.991", "max": "0.991", "min": "0.9"}]
            },
        },
    }


def test_katib_client_creates_edits_and_waits_as_the_notebook(
    token_notebook: Notebook, kube_admin: k8s.ApiClient, control_plane: ControlPlane
) -> None:
    notebook = token_notebook
    namespace = notebook.namespace
    path = f"/apis/kubeflow.org/v1beta1/namespaces/{namespace}/experiments/random-lr"
    started = datetime.now(UTC)

    with notebook.kernel("katib") as kernel:
        kernel.run(f"NAMESPACE = {namespace!r}")
        created = kernel.run(CREATE)
        stamps = assert_stamped(
            read(kube_admin, path),
            rule="katib-experiments",
            owner=notebook.user,
            not_before=started,
        )
        assert created["metadata"]["annotations"][KEYS.ttl_after_finished] == "7d"
        assert created["spec"]["trialTemplate"]["trialSpec"]["kind"] == "Job"

        edited = kernel.run(EDIT)
        assert edited["spec"]["maxTrialCount"] == 5
        assert edited["spec"]["parallelTrialCount"] == 2
        assert (
            assert_stamped(
                read(kube_admin, path),
                rule="katib-experiments",
                owner=notebook.user,
                not_before=started,
            )
            == stamps
        )

        # The SDK polls; the test plays the Katib controller and reports the goal reached.
        kernel.submit(WAIT)
        write_status(kube_admin, path, succeeded_status(datetime.now(UTC)))
        waited = kernel.answer()
        assert waited["status"]["currentOptimalTrial"]["bestTrialName"] == "random-lr-aaaa"
        assert (
            assert_stamped(
                waited, rule="katib-experiments", owner=notebook.user, not_before=started
            )
            == stamps
        )

    key = "Experiment/random-lr"
    assert actions(sweep_preview(control_plane, namespace)) == {key: "keep"}
    assert actions(sweep_preview(control_plane, namespace, "+6d")) == {key: "keep"}
    later = sweep_preview(control_plane, namespace, "+8d")
    assert actions(later) == {key: "delete"}
    assert later[key]["rule"] == "katib-experiments"
