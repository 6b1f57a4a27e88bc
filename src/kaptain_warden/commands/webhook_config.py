"""`kaptain-warden webhook-config`: print the webhook configurations, for installs without Helm."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _run(args: argparse.Namespace) -> int:
    import yaml

    from kaptain_warden.install.webhook_configurations import WebhookClient, webhook_configurations
    from kaptain_warden.policies.loader import PolicyError, load_policy

    try:
        policy = load_policy(args.policy)
    except PolicyError as exc:
        print(exc, file=sys.stderr)
        return 1
    try:
        if args.service:
            namespace, _, name = args.service.partition("/")
            if not namespace or not name:
                raise ValueError(f"--service takes NAMESPACE/NAME, got {args.service!r}")
            client = WebhookClient(
                service_namespace=namespace, service_name=name, service_port=args.service_port
            )
        else:
            client = WebhookClient(url=args.url)
        ca_bundle = Path(args.ca_bundle_file).read_bytes() if args.ca_bundle_file else b""
        documents = webhook_configurations(
            policy=policy,
            client=client,
            ca_bundle=ca_bundle,
            name=args.name,
            failure_policy=args.failure_policy,
            timeout_seconds=args.timeout_seconds,
        )
    except (ValueError, OSError) as exc:
        print(f"kaptain-warden webhook-config: {exc}", file=sys.stderr)
        return 2
    if not ca_bundle:
        print(
            "kaptain-warden webhook-config: warning: no --ca-bundle-file; the API server will "
            "only trust the webhook if its certificate chains to the system roots",
            file=sys.stderr,
        )
    sys.stdout.write(yaml.safe_dump_all(documents, sort_keys=False))
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `webhook-config`."""
    parser = subparsers.add_parser(
        "webhook-config",
        help="print the Mutating/ValidatingWebhookConfiguration for a policy as YAML",
        description=(
            "Print both webhook configurations as multi-document YAML, generated from the kinds "
            "the policy governs. Pipe to `kubectl apply -f -`."
        ),
    )
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--url", help="base https:// URL of the admission server")
    target.add_argument("--service", metavar="NS/NAME", help="the admission server's Service")
    parser.add_argument("--service-port", type=int, default=443, help="Service port (default 443)")
    parser.add_argument(
        "--ca-bundle-file", metavar="FILE", help="PEM CA that signed the server cert"
    )
    parser.add_argument("--policy", metavar="FILE", help="policy file (default: built-in policy)")
    parser.add_argument("--name", default="kaptain-warden", help="configuration object name")
    parser.add_argument(
        "--failure-policy",
        choices=("Ignore", "Fail"),
        default="Ignore",
        help="Ignore (default): a warden outage never blocks admission; Fail: nothing governed "
        "is admitted unstamped, and nothing governed is admitted while the warden is down",
    )
    parser.add_argument(
        "--timeout-seconds", type=int, default=5, help="1-30, default 5 (the API default is 10)"
    )
    parser.set_defaults(run=_run)
