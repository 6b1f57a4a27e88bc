"""`kaptain-warden certs bootstrap|watch|unregister`: self-managed TLS for the admission server.

The Helm chart runs `bootstrap` as the admission server's init container (the server starts
with valid files, and the API server already trusts their CA), `watch` as a sidecar that
renews and rotates (the server re-reads the files for new connections), and `unregister` in
the chart's pre-delete hook.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kaptain_warden.certs.settings import CertsSettings

# The namespace file every pod gets with its ServiceAccount token.
_POD_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def _default_namespace() -> str | None:
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    try:
        return _POD_NAMESPACE_FILE.read_text().strip() or None
    except OSError:
        return None


def _duration(text: str) -> float:
    """A duration flag (`90s`, `15m`, `730d`) in seconds."""
    from kaptain_warden.policies.durations import DurationError, parse_duration

    try:
        return parse_duration(text).total_seconds()
    except DurationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _settings(args: argparse.Namespace) -> CertsSettings:
    import datetime as dt

    from kaptain_warden.certs.rotation import Timings
    from kaptain_warden.certs.settings import CertsSettings

    if not args.namespace:
        raise ValueError("--namespace is required outside a pod (or set POD_NAMESPACE)")
    timings = Timings(
        ca_validity=dt.timedelta(seconds=args.ca_validity),
        ca_renew_before=dt.timedelta(seconds=args.ca_renew_before),
        cert_validity=dt.timedelta(seconds=args.cert_validity),
        cert_renew_before=dt.timedelta(seconds=args.cert_renew_before),
        bundle_grace=dt.timedelta(seconds=args.bundle_grace),
        replica_grace=dt.timedelta(seconds=args.replica_grace),
    )
    return CertsSettings(
        namespace=args.namespace,
        secret_name=args.secret,
        service_name=args.service,
        cert_dir=Path(args.cert_dir) if args.cert_dir else None,
        cluster_domain=args.cluster_domain,
        extra_dns_names=tuple(args.dns_name),
        mutating_webhook=args.mutating_webhook,
        validating_webhook=args.validating_webhook,
        timings=timings,
    )


def _configure_logging(args: argparse.Namespace) -> None:
    from kaptain_warden.logs import configure_logging

    json = args.log_format == "json" or (args.log_format == "auto" and not sys.stderr.isatty())
    configure_logging(args.log_level, json=json)


def _bootstrap(args: argparse.Namespace) -> int:
    import logging

    from kaptain_warden.certs.sync import CertificateManager
    from kaptain_warden.kube.api import KubeApi
    from kaptain_warden.kube.client import load_api_client

    _configure_logging(args)
    logger = logging.getLogger("kaptain_warden.certs")
    try:
        settings = _settings(args)
    except ValueError as exc:
        print(f"kaptain-warden certs bootstrap: {exc}", file=sys.stderr)
        return 2
    manager = CertificateManager(KubeApi(load_api_client(args.kubeconfig)), settings)
    deadline = time.monotonic() + args.timeout
    files_ready = False
    while True:
        try:
            result = manager.sync()
        except Exception:  # retried until the deadline: the API server may still be starting
            logger.exception("certificate bootstrap pass failed")
        else:
            files_ready = settings.cert_dir is None or result.material.serving is not None
            if files_ready and (result.published or not manager.publishes):
                logger.info("certificates ready", extra={"dns_names": list(settings.dns_names)})
                return 0
        if time.monotonic() >= deadline:
            break
        time.sleep(args.retry_interval)
    if files_ready:
        # The server can start; the `watch` sidecar keeps publishing the bundle and keeps the
        # pod unready until it is published.
        logger.warning("the webhook configurations do not carry the CA bundle yet; continuing")
        return 0
    logger.error("no serving certificate after %.0fs", args.timeout)
    return 1


def _watch(args: argparse.Namespace) -> int:
    import logging

    from kaptain_warden.certs.sync import CertificateManager
    from kaptain_warden.certs.watch import Watcher, serve_health
    from kaptain_warden.kube.api import KubeApi
    from kaptain_warden.kube.client import load_api_client

    _configure_logging(args)
    try:
        settings = _settings(args)
    except ValueError as exc:
        print(f"kaptain-warden certs watch: {exc}", file=sys.stderr)
        return 2
    if args.stale_after <= args.interval:
        print("kaptain-warden certs watch: --stale-after must exceed --interval", file=sys.stderr)
        return 2
    if args.stale_after >= args.replica_grace:
        # A replica must report not-ready before the old CA may leave the bundle.
        print(
            "kaptain-warden certs watch: --stale-after must be shorter than --replica-grace",
            file=sys.stderr,
        )
        return 2
    manager = CertificateManager(KubeApi(load_api_client(args.kubeconfig)), settings)
    watcher = Watcher(manager, interval=args.interval, stale_after=args.stale_after)

    def stop(signum: int, frame: FrameType | None) -> None:
        watcher.stop.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server = serve_health(watcher, args.health_port, host=args.health_host)
    logging.getLogger("kaptain_warden.certs").info(
        "watching the certificate Secret every %.0fs; health on %s:%d",
        args.interval,
        args.health_host,
        server.port,
    )
    try:
        watcher.run()
    finally:
        server.stop()
    return 0


def _unregister(args: argparse.Namespace) -> int:
    from kaptain_warden.certs.unregister import unregister_webhooks
    from kaptain_warden.kube.api import KubeApi
    from kaptain_warden.kube.client import load_api_client

    deleted = unregister_webhooks(
        KubeApi(load_api_client(args.kubeconfig)),
        mutating=args.mutating_webhook,
        validating=args.validating_webhook,
    )
    print("deleted: " + (", ".join(deleted) if deleted else "nothing (already gone)"))
    return 0


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, then ~/.kube)")
    parser.add_argument(
        "--mutating-webhook", metavar="NAME", help="MutatingWebhookConfiguration to act on"
    )
    parser.add_argument(
        "--validating-webhook", metavar="NAME", help="ValidatingWebhookConfiguration to act on"
    )
    parser.add_argument("--log-format", choices=("auto", "json", "text"), default="auto")
    parser.add_argument("--log-level", default="INFO")


def _tls(parser: argparse.ArgumentParser) -> None:
    _common(parser)
    parser.add_argument(
        "--namespace",
        default=_default_namespace(),
        help="namespace of the Secret and the Service (default: $POD_NAMESPACE, the pod's own)",
    )
    parser.add_argument("--secret", required=True, help="the certificate Secret's name")
    parser.add_argument("--service", required=True, help="the admission server's Service name")
    parser.add_argument("--cert-dir", help="write tls.crt, tls.key and ca.crt here")
    parser.add_argument("--cluster-domain", default="cluster.local", help="default cluster.local")
    parser.add_argument(
        "--dns-name", action="append", default=[], help="another name for the certificate"
    )
    timings = parser.add_argument_group("certificate lifetimes (durations such as 90m, 36h, 7d)")
    for flag, default, text in (
        ("--ca-validity", "730d", "how long a CA is valid"),
        ("--ca-renew-before", "60d", "start a CA rotation this long before the CA expires"),
        ("--cert-validity", "90d", "how long a serving certificate is valid"),
        ("--cert-renew-before", "30d", "renew the serving certificate this long before expiry"),
        ("--bundle-grace", "1m", "after publishing a new CA, wait before serving from it"),
        ("--replica-grace", "5m", "after a new serving cert, wait before dropping the old CA"),
    ):
        timings.add_argument(
            flag, type=_duration, default=default, help=f"{text} (default {default})"
        )


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `certs` and its subcommands."""
    parser = subparsers.add_parser(
        "certs", help="self-managed TLS: bootstrap, watch and unregister the webhook certificates"
    )
    sub = parser.add_subparsers(dest="certs_command", metavar="ACTION", required=True)

    bootstrap = sub.add_parser(
        "bootstrap",
        help="create or read the CA Secret, write the serving files, publish the CA bundle",
        description=(
            "One-shot (an init container): make sure the certificate Secret holds a CA and a "
            "serving certificate for the Service, write them to --cert-dir, and write the CA "
            "bundle into the webhook configurations. Replicas starting together agree on one CA."
        ),
    )
    _tls(bootstrap)
    bootstrap.add_argument(
        "--timeout", type=_duration, default="2m", help="give up after (default 2m)"
    )
    bootstrap.add_argument("--retry-interval", type=_duration, default="2s", help="default 2s")
    bootstrap.set_defaults(run=_bootstrap)

    watch = sub.add_parser(
        "watch",
        help="keep the files and CA bundles current: renew and rotate (a sidecar)",
        description=(
            "Run the bootstrap pass every --interval: renew the serving certificate, rotate the "
            "CA (new CA trusted first, then served, then the old one dropped), and rewrite the "
            "files the server re-reads for new connections. GET /readyz on --health-port "
            "answers 503 when the last successful pass is older than --stale-after."
        ),
    )
    _tls(watch)
    watch.add_argument("--interval", type=_duration, default="10s", help="default 10s")
    watch.add_argument("--stale-after", type=_duration, default="1m", help="default 1m")
    watch.add_argument("--health-port", type=int, default=8081, help="default 8081")
    watch.add_argument("--health-host", default="0.0.0.0", help="default 0.0.0.0")
    watch.set_defaults(run=_watch)

    unregister = sub.add_parser(
        "unregister",
        help="delete the webhook configurations (the chart's pre-delete hook)",
        description=(
            "Delete both webhook configurations, so the API server stops calling a server that "
            "is about to go away. Absent configurations are not an error."
        ),
    )
    _common(unregister)
    unregister.set_defaults(run=_unregister)
