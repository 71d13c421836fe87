"""``python -m kdlib``: a thin command line over the library."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from typing import Any, Callable, NoReturn

from .errors import KdlibError
from .options import add_options, from_options


class _Parser(argparse.ArgumentParser):
    """Errors on one line, naming the help to read. ``options`` adds a command's options when it
    is used: the experiments' come from their parameter models, which import the analysis
    (pandas, altair), and ``kdlib local status`` should not wait for that."""

    def __init__(self, *args: Any, options: Callable[[argparse.ArgumentParser], None] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._options = options

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        if self._options is not None:
            add, self._options = self._options, None
            add(self)
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {value}")
    return value


def _port(text: str) -> int:
    value = _positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"must be a port in 1..65535, not {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m kdlib", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    build = commands.add_parser("build", help="build the control-plane binaries into the cache (if missing)")
    build.add_argument("--force", action="store_true", help="rebuild even when cached")

    commands.add_parser("run", help="run the microbenchmarks of Figures 9-11 (resumes a run_id); the options are "
                        "the notebook's parameters", options=_run_options)

    book = commands.add_parser("book", help="build the Jupyter Book from an executed run into _build/html")
    book.add_argument("--run-id", help="the run to show (default: the one named in results/reference.txt)")

    kd = commands.add_parser("kd", help="Kubedirect's binaries")
    kd_commands = kd.add_subparsers(dest="action", required=True, parser_class=_Parser)
    fetch = kd_commands.add_parser("fetch", help="take Kd's control-plane binaries out of its published images")
    fetch.add_argument("--repository", default="shengqipku", help="image repository (default: shengqipku)")
    fetch.add_argument("--tag", default="v1.32.0-kubedirect", help="image tag (default: v1.32.0-kubedirect)")
    fetch.add_argument("--dest", type=Path, help="where to put them (default: ~/.cache/kdlib/kd/<tag>/)")
    fetch.add_argument("--registry", default="docker.io", help="registry host[:port] (default: docker.io)")
    fetch.add_argument("--platform", help="os/arch of the images to take (default: this machine's)")
    fetch.add_argument("--force", action="store_true", help="fetch again even when dest holds them")

    local = commands.add_parser("local", help="the local embedded cluster")
    local_commands = local.add_subparsers(dest="action", required=True, parser_class=_Parser)
    state = argparse.ArgumentParser(add_help=False)
    state.add_argument("--state-dir", type=Path, help="where the cluster keeps its files "
                       "(default: <state root>/local; the state root is $KDLIB_STATE_DIR or ~/.local/state/kdlib)")
    up = local_commands.add_parser("up", parents=[state], help="start a cluster in the background")
    up.add_argument("--nodes", type=_positive_int, default=20, help="number of kwok nodes (default 20)")
    up.add_argument("--bin-dir", type=Path, help="directory of your own binaries (e.g. Kd's)")
    up.add_argument("--kd", action="store_true", help="the --bin-dir binaries are Kubedirect's "
                    "(without --bin-dir: those `kd fetch` stored)")
    up.add_argument("--apiserver-port", type=_port, help="apiserver port (default: a free one)")
    up.add_argument("--timeout", type=float, default=120.0, help="start-up deadline in seconds")
    up.add_argument("--real-nodes", type=int, default=0, metavar="K",
                    help="also K real nodes: real kubelet and containers (needs root; default 0)")
    status = local_commands.add_parser("status", parents=[state], help="show the running cluster")
    status.add_argument("--all", action="store_true", help="every cluster kdlib started here (a suite's too)")
    down = local_commands.add_parser("down", parents=[state], help="stop the cluster and remove its files")
    down.add_argument("--keep", action="store_true", help="keep the logs/ folder for debugging")
    down.add_argument("--all", action="store_true", help="every cluster kdlib started here (a suite's too)")
    down.add_argument("--force", action="store_true",
                      help="with --all: stop a running suite's cluster too (otherwise refused while a suite runs)")

    trace = commands.add_parser("trace", help="the Azure Functions trace of Figures 12-13")
    trace_commands = trace.add_subparsers(dest="action", required=True, parser_class=_Parser)
    plan = trace_commands.add_parser("schedule", help="write the schedule a replay would send, as CSV "
                                     "(function,minute,send_s,runtime_ms)")
    plan.add_argument("-o", "--output", type=Path, required=True, help="the CSV file to write")
    plan.add_argument("--trace", type=Path, help="a directory in the Azure 2019 format (default: data/azure_500)")
    plan.add_argument("--functions", type=_positive_int, help="the first N functions of the file (default: all)")
    plan.add_argument("--random-subset", action="store_true",
                      help="choose the N functions at random with --seed instead of the first N")
    plan.add_argument("--minutes", type=_positive_int, default=30, help="the first M minutes (default 30)")
    plan.add_argument("--seed", type=int, default=42, help="the loader's seed (default 42, as the original)")
    plan.add_argument("--exact", action="store_true", help="the trace's exact counts: leave out the original "
                      "loader's extra invocation on each active minute's end")
    trace_commands.add_parser("run", help="replay the trace (resumes a run_id); the options are the notebook's "
                              "parameters", options=_trace_run_options)

    from .cluster.ssh.cli import add_parser as add_ssh_parser

    add_ssh_parser(commands, _Parser)
    return parser


def _run_options(run: argparse.ArgumentParser) -> None:
    from .experiments.microbench.spec import SuiteParams

    add_options(run, SuiteParams)
    run.add_argument("--scales", action="append", default=[], metavar="BENCH=S1,S2",
                     help="shorthand: --scales scale-pods=50,100 is --scale-pods 50,100 (repeatable)")


def _trace_run_options(replay: argparse.ArgumentParser) -> None:
    from .experiments.trace.params import TraceParams

    add_options(replay, TraceParams)


def _local(args: argparse.Namespace) -> int:
    from .cluster import local

    if args.action == "up":
        if args.kd and args.bin_dir is None:  # Kd's binaries from `kd fetch`, if it stored them
            from .cluster import kd_images

            found = kd_images.stored()
            if found is not None:
                args.bin_dir = found.directory
                print(f"using the Kubedirect binaries that `kd fetch` stored in {found.directory}", file=sys.stderr)
        cluster = local.LocalCluster(nodes=args.nodes, state_dir=args.state_dir, bin_dir=args.bin_dir,
                                     kd=args.kd, apiserver_port=args.apiserver_port, timeout=args.timeout,
                                     real_nodes=args.real_nodes)
        info = cluster.start()  # left running: `down` stops it
        print(info.kubeconfig)
        return 0
    if args.action == "status":
        if args.all:
            found_all = [local.status(d) for d in local.clusters()]
            print(json.dumps(found_all, indent=2))
            if any(f["running"] for f in found_all):
                print("stop them with `python -m kdlib local down --all`", file=sys.stderr)
            return 0 if any(f["running"] for f in found_all) else 1
        found = local.status(args.state_dir)
        print(json.dumps(found, indent=2))
        if found["dead"]:
            print(f"not running: {', '.join(found['dead'])} died; see {found['state_dir']}/logs/, then stop the "
                  f"rest with `{found['stop_with']}`", file=sys.stderr)
        others = [str(d) for d in local.clusters() if d != Path(found["state_dir"]) and local.status(d)["running"]]
        if others:
            print(f"also running: {', '.join(others)} (see `local status --all`)", file=sys.stderr)
        return 0 if found["running"] else 1
    if args.action == "down":
        if args.all and not args.force:
            from .errors import ClusterBusyError
            from .experiments.runner import suite_holder

            holder = suite_holder()
            if holder is not None:
                raise ClusterBusyError(f"an experiment suite is running ({holder}); `local down --all` would stop "
                                       "its cluster under it: wait for it or stop it (Ctrl-C, or kill its pid), "
                                       "or pass --force")
        for state_dir in (local.clusters() if args.all else [args.state_dir]):
            local.down(state_dir, keep_logs=args.keep)
        return 0
    raise AssertionError(args.action)


def _kd(args: argparse.Namespace) -> int:
    from .cluster import kd_images

    result = kd_images.fetch(args.repository, args.tag, args.dest, args.registry,
                             platform=args.platform, force=args.force)
    for name, binary in result.binaries.items():
        print(f"{name}: {binary.source}", file=sys.stderr)
    print(result.directory)
    return 0


def _scales(args: argparse.Namespace) -> None:
    """``--scales scale-pods=50,100`` as ``--scale-pods 50,100``."""
    from .errors import ConfigError

    for text in args.scales:
        bench, _, values = text.partition("=")
        name = bench.replace("-", "_")
        if name not in ("scale_pods", "scale_funcs", "scale_nodes"):
            raise ConfigError(f"--scales {text!r}: unknown bench {bench!r} (scale-pods, scale-funcs, scale-nodes)")
        try:
            setattr(args, name, [int(v) for v in values.split(",") if v])
        except ValueError:
            raise ConfigError(f"--scales {text!r}: expected BENCH=S1,S2 with integer scales") from None


def _run(args: argparse.Namespace) -> int:
    from .experiments import microbench

    _scales(args)
    params = from_options(microbench.SuiteParams, args)
    params, note = microbench.with_fetched_kd(params)
    if note:
        print(note, file=sys.stderr)
    outcome = microbench.run_suite(params)
    print(outcome)
    for baseline, reason in outcome.not_measured.items():
        print(f"not measured: {baseline}: {reason}")
    print(f"report: python -c \"from kdlib.experiments import microbench; microbench.report({args.run_id!r})\"",
          file=sys.stderr)
    return 0 if outcome.count("failed") == 0 else 1


def _trace_run(args: argparse.Namespace) -> int:
    from .experiments.trace import params as trace_params, run as trace_run

    outcome = trace_run.run_trace(from_options(trace_params.TraceParams, args))
    print(outcome)
    for system, reason in outcome.not_measured.items():
        print(f"not measured: {system}: {reason}")
    print(f"report: python -c \"from kdlib.experiments.trace import report; report.trace_report({args.run_id!r})\"",
          file=sys.stderr)
    return 0 if not outcome.failed else 1


def _trace(args: argparse.Namespace) -> int:
    if args.action == "run":
        return _trace_run(args)
    from .experiments.trace import data, schedule

    trace = data.subset(data.load(args.trace or data.SHIPPED), args.functions, args.minutes, args.seed,
                        rule="random" if args.random_subset else "first")
    planned = schedule.build(trace, seed=args.seed, original_extra=not args.exact)
    schedule.write_csv(planned, args.output)
    counted = schedule.summary(planned)
    print(f"{args.output}: {counted['invocations']} invocations ({counted['extra_invocations']} on a minute's end "
          f"added by the original's loader) of {len(trace.functions)} functions, {len(trace.minutes)} minutes, "
          f"seed {args.seed}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .cluster.base import raise_terminated
    from .log import show

    show()
    signal.signal(signal.SIGTERM, raise_terminated)
    try:
        if args.command == "build":
            from .cluster.binaries import build_binaries, build_loader_schedule

            print(build_binaries(force=args.force).directory)
            build_loader_schedule()  # the trace's schedule generator (seconds; stdlib only)
            return 0
        if args.command == "kd":
            return _kd(args)
        if args.command == "local":
            return _local(args)
        if args.command == "ssh":
            from .cluster.ssh.cli import run as run_ssh

            return run_ssh(args)
        if args.command == "run":
            return _run(args)
        if args.command == "trace":
            return _trace(args)
        if args.command == "book":
            from .experiments import pages
            from .publish.book import build_book

            print(build_book(pages.contents(), args.run_id) / "index.html")
            return 0
    except KdlibError as error:
        print(f"kdlib: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("kdlib: interrupted", file=sys.stderr)
        return 130
    raise AssertionError(args.command)
