"""Which objects an object was made for, in the order the resolver asks them."""

from kaptain_warden.policies.inheritance import ParentRef, parent_refs


def test_controller_reference_comes_first_then_other_owners_then_labels():
    obj = {
        "metadata": {
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "ConfigMap", "name": "cm", "uid": "u1"},
                {
                    "apiVersion": "serving.knative.dev/v1",
                    "kind": "Configuration",
                    "name": "cfg",
                    "uid": "u2",
                    "controller": True,
                },
            ],
            "labels": {
                "serving.kserve.io/inferenceservice": "mnist",
                "serving.knative.dev/configuration": "cfg",
            },
        }
    }
    assert parent_refs(obj) == (
        ParentRef("serving.knative.dev/v1", "Configuration", "cfg", "u2"),
        ParentRef("v1", "ConfigMap", "cm", "u1"),
        ParentRef("serving.kserve.io/v1beta1", "InferenceService", "mnist"),
    )


def test_kfserving_label_names_the_kfserving_inference_service():
    obj = {"metadata": {"labels": {"serving.kubeflow.org/inferenceservice": "mnist"}}}
    assert parent_refs(obj) == (
        ParentRef("serving.kubeflow.org/v1beta1", "InferenceService", "mnist"),
    )


def test_malformed_references_are_ignored():
    for metadata in (
        None,
        {"ownerReferences": "x"},
        {"ownerReferences": [5, {"kind": "X"}, {"apiVersion": "v1", "kind": "", "name": "n"}]},
        # No uid: the API server would refuse it, and nothing could check the parent found.
        {"ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "j"}]},
        {"labels": {"serving.knative.dev/service": ""}},
        {"labels": None},
    ):
        assert parent_refs({"metadata": metadata}) == ()
