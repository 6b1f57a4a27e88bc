"""Which objects an object was made for, in the order the resolver asks them."""

from kaptain_warden.policies.inheritance import ParentRef, parent_refs


def test_controller_reference_comes_first_then_other_owners_then_labels():
    obj = {
        "metadata": {
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "ConfigMap", "name": "cm"},
                {
                    "apiVersion": "serving.knative.dev/v1",
                    "kind": "Configuration",
                    "name": "cfg",
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
        ParentRef("serving.knative.dev/v1", "Configuration", "cfg"),
        ParentRef("v1", "ConfigMap", "cm"),
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
        {"labels": {"serving.knative.dev/service": ""}},
        {"labels": None},
    ):
        assert parent_refs({"metadata": metadata}) == ()
