"""`python -m kdlib ssh up|status|down INVENTORY`, mirroring `kdlib local`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(commands: argparse._SubParsersAction, parser_class: type[argparse.ArgumentParser]) -> None:
    ssh = commands.add_parser("ssh", help="a cluster on SSH hosts named by an inventory file")
    actions = ssh.add_subparsers(dest="action", required=True, parser_class=parser_class)
    inventory = argparse.ArgumentParser(add_help=False)
    inventory.add_argument("inventory", type=Path, help="the inventory YAML file")
    up = actions.add_parser("up", parents=[inventory], help="start the cluster and leave it running")
    up.add_argument("--bin-dir", type=Path, help="directory of your own binaries (e.g. Kd's)")
    up.add_argument("--kd", action="store_true", help="the --bin-dir binaries are Kubedirect's")
    up.add_argument("--timeout", type=float, default=180.0, help="start-up deadline in seconds")
    actions.add_parser("status", parents=[inventory], help="show what runs on each host")
    actions.add_parser("down", parents=[inventory], help="stop the cluster by PID and remove its files on every host")
    actions.add_parser("check", parents=[inventory], help="validate the inventory (no connection)")


def run(args: argparse.Namespace) -> int:
    from . import cluster, inventory, running

    inv = inventory.load(args.inventory)  # validated before any connection
    if args.action == "check":
        print(inv.to_yaml(), end="")
        return 0
    if inv.mode == "kubeadm":  # its own module: kubeadm_cluster
        from .kubeadm_cluster import run_cli
        return run_cli(args, inv)
    if args.action == "up":
        info = cluster.SshCluster(inv, bin_dir=args.bin_dir, kd=args.kd, timeout=args.timeout).start()
        print(info.kubeconfig)  # left running: `down` stops it
        return 0
    if args.action == "status":
        found = running.status(inv)
        print(json.dumps(found, indent=2))
        return 0 if found["running"] else 1
    if args.action == "down":
        running.down(inv)
        return 0
    raise AssertionError(args.action)
