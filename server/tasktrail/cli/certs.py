"""`tasktrail certs client NAME`: a client certificate from the local CA, for a
control-plane port started with `up --client-certs` (HTTPS with client
certificates, as pgEdge's control plane offers)."""

from __future__ import annotations

import argparse
import json
import sys

from tasktrail.cli import options
from tasktrail.cli._args import StrictParser, add_output
from tasktrail.edge import tls


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    commands = sub.add_parser("certs", help="client certificates from the local CA").add_subparsers(
        dest="certs_command", required=True, parser_class=StrictParser
    )
    p = commands.add_parser("client", help="a client certificate and key, signed by the local CA")
    options.add(p, options.DATABASE[:1])
    p.add_argument("name", help="who the certificate is for (letters, digits, '.', '-', '_')")
    add_output(p)
    p.set_defaults(run=run_client)


def run_client(args: argparse.Namespace) -> int:
    try:
        made = tls.client_certificate(args.data_dir / "tls", args.name)
    except (ValueError, FileNotFoundError) as exc:
        print(f"tasktrail: {exc}", file=sys.stderr)
        return 1
    if args.output == "json":
        print(json.dumps({"cert": str(made.cert), "key": str(made.key)}))
    else:
        print(f"certificate {made.cert}")
        print(f"key         {made.key}")
        print(
            f"# curl --cert {made.cert} --key {made.key} --cacert {args.data_dir / 'tls' / 'ca.pem'} https://…:3000/…"
        )
    return 0
