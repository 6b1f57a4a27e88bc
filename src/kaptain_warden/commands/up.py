"""`kaptain-warden up`: the embedded default — a local control plane with the warden registered."""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

DEMO_NAMESPACE = "team-a"
# A TTL extension within the default policy's maxTtl (30d), and one above it.
EXTENDED_TTL = "7d"
OVER_LIMIT_TTL = "90d"


def _run(args: argparse.Namespace) -> int:
    from kaptain_warden.policies.loader import PolicyError
    from kaptain_warden.testing.controlplane import ControlPlane
    from kaptain_warden.testing.errors import ControlPlaneError
    from kaptain_warden.testing.stack import WardenStack, create_profile_namespace, notebook_user

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    print("starting etcd and kube-apiserver (the first run builds them: a few minutes) ...")
    try:
        with (
            ControlPlane(crds=True, controller_manager=args.controller_manager) as plane,
            WardenStack(
                plane,
                policy_path=Path(args.policy) if args.policy else None,
                failure_policy=args.failure_policy,
                log_format="text",
            ) as stack,
        ):
            with plane.api_client() as admin:
                create_profile_namespace(admin, DEMO_NAMESPACE)
            user = notebook_user(DEMO_NAMESPACE)
            kubectl = shlex.quote(str(plane.kubectl_path))
            keys = stack.policy.keys
            prefix = keys.prefix
            as_notebook = f"{kubectl} -n {DEMO_NAMESPACE} --as={user}"
            annotate = f"{as_notebook} annotate --overwrite secret s3-creds {keys.ttl}"
            print(
                f"""
kaptain-warden is running against a local Kubernetes API server.
  API server:        {plane.url}
  admission server:  {stack.url}  (log: {stack.log_path})
  kubeconfig:        {plane.kubeconfig_path}
  notebook identity: {user}  (namespace {DEMO_NAMESPACE})

Paste these into another terminal:

  export KUBECONFIG={plane.kubeconfig_path}
  # 1. a notebook creates a registry Secret: the warden stamps owner and TTL
  {as_notebook} create secret generic s3-creds --from-literal=key=v
  # 2. look at the stamp
  {kubectl} -n {DEMO_NAMESPACE} get secret s3-creds -o yaml | grep {prefix}
  # 3. the owner extends its lifetime: expires-at is recomputed from created-at
  {annotate}={EXTENDED_TTL} -o yaml | grep {keys.expires_at}
  # 4. beyond the policy's maxTtl, the change is refused
  {annotate}={OVER_LIMIT_TTL}

  # and what the sweeper would do:
  kaptain-warden sweep --dry-run --kubeconfig {plane.kubeconfig_path}

Ctrl-C stops everything.""",
                flush=True,
            )
            while not stop.wait(1.0):
                plane.check()
    except PolicyError as exc:
        print(exc, file=sys.stderr)
        return 1
    except ControlPlaneError as exc:
        print(f"kaptain-warden up: {exc}", file=sys.stderr)
        return 1
    print("stopped: admission server, kube-apiserver and etcd are down, temporary files removed")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `up`."""
    parser = subparsers.add_parser(
        "up",
        help="run the embedded default: a local API server with the warden registered",
        description=(
            "Start etcd and kube-apiserver on loopback (built once by hack/test-assets and "
            "cached), install the Kaptain SDK's CRDs, start the admission server with the "
            "built-in policy and register its webhooks, then print a kubeconfig and kubectl "
            "lines to try. No existing cluster is needed. Ctrl-C stops everything."
        ),
    )
    parser.add_argument("--policy", metavar="FILE", help="policy file (default: built-in policy)")
    parser.add_argument(
        "--failure-policy",
        choices=("Ignore", "Fail"),
        default="Fail",
        help="of the registered webhooks (default Fail, so a mistake shows at once)",
    )
    parser.add_argument(
        "--controller-manager",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run kube-controller-manager (garbage collector, Job TTL); default on",
    )
    parser.set_defaults(run=_run)
