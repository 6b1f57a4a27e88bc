"""One module per kind family; the registry imports every module here that defines `FAMILY`.

Adding a family is adding a module (plus its upstream CRD in `hack/upstream.tsv` and tests,
see CONTRIBUTING.md). A module declares facts, it runs nothing: no Kubernetes client, no I/O.
For example, a module `spark.py` for the Spark operator's SparkApplication could read::

    '''The Spark operator's SparkApplication (kubeflow/spark-operator v2.1).'''

    from kaptain_warden.policies.kinds.spec import Family, KnownKind, NativeTtl, SecretRefs
    from kaptain_warden.policies.kinds.spec import StateFinish

    FAMILY = Family(
        name="Spark operator",
        upstream="github.com/kubeflow/spark-operator v2.1.0",
        kinds=(
            KnownKind(
                "sparkoperator.k8s.io/v1beta2",
                "SparkApplication",
                "sparkapplications",
                # api/v1beta2 ApplicationStateType; the instant is status.terminationTime
                finish=StateFinish(
                    "status.applicationState.state",
                    frozenset({"COMPLETED", "FAILED"}),
                    time="status.terminationTime",
                ),
                native_ttl=NativeTtl("spec.timeToLiveSeconds"),
                secret_refs=SecretRefs(containers=("spec.driver", "spec.executor")),
            ),
        ),
    )

What each field means is documented on `spec.KnownKind`. Paths are dotted (`spec.x.y`), `*`
for every value of a map, `key[*]` for every item of a list (`spec.workerGroupSpecs[*].template
.spec`). Every kind must be unique across families (the registry refuses a second entry).
"""
