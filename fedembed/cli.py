"""The `fedembed` command: simulate, evaluate, export (and deploy's and serve's subcommands).

Starting it is light: building the parser imports nothing heavy (`--help` and argument errors
need none of Flower, Ray, torch, gensim or numpy), `evaluate`, `export` and `serve` check their
path first, and `simulate` validates its scenario and flags before it imports Flower's
simulation runtime and Ray (tests/test_cli_startup.py)."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from fedembed.errors import FedembedError

EXPORT_FORMATS = ["word2vec-text", "word2vec-binary", "npy", "fasttext-bin", "sentence-npz"]   # checked again by the family


def overrides_of(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, str]]:
    """--rounds, --clients and --set as dotted-key overrides, with the flag that set each (for
    errors); a later --set of the same key wins, as it does in the scenario."""
    overrides: dict[str, Any] = {}
    origins: dict[str, str] = {}
    if args.rounds is not None:
        overrides["federation.rounds"], origins["federation.rounds"] = args.rounds, f"--rounds {args.rounds}"
    if args.clients is not None:
        overrides["partition.num_clients"] = args.clients
        origins["partition.num_clients"] = f"--clients {args.clients}"
    for item in args.set or []:
        key, eq, raw = item.partition("=")
        if not eq or not key.strip():
            raise FedembedError(f"--set expects KEY=VALUE, got {item!r}")
        overrides[key.strip()], origins[key.strip()] = parse_value(raw), f"--set {item}"
    return overrides, origins


def check_scenario(args: argparse.Namespace, overrides: dict[str, Any], origins: dict[str, str]) -> None:
    """The scenario and overrides `simulate` will use, validated as it will validate them, so a
    mistake is reported before Flower and Ray are imported (fedembed.rundir does the same again)."""
    from fedembed import compose

    if not args.resume:
        compose.load(args.config, overrides, origins)
        return
    from fedembed.rundir import CONFIG

    rest = {k: v for k, v in overrides.items() if k != "federation.rounds"}
    if args.config is not None or rest:
        compose.load(args.config, rest, origins)
    saved = Path(args.out) / CONFIG
    if "federation.rounds" in overrides and saved.is_file():
        compose.load(saved, {"federation.rounds": overrides["federation.rounds"]}, origins)


def _simulate(args: argparse.Namespace) -> int:
    overrides, origins = overrides_of(args)
    if args.dry_run:
        from fedembed import compose

        cfg = compose.load(args.config, overrides, origins)
        print(f"scenario {cfg.name!r}: what each client's update goes through, then the server")
        print("\n".join(compose.describe(cfg)))
        return 0
    check_scenario(args, overrides, origins)
    from fedembed.simulation import simulate

    report = simulate(args.config, args.out, resume=args.resume, overrides=overrides, progress=not args.quiet)
    print(json.dumps(_headline(report), indent=2))
    print(f"run directory: {args.out}")
    return 0


def _plan(args: argparse.Namespace) -> int:
    from fedembed import compose

    overrides, origins = overrides_of(args)
    cfg = compose.load(args.config, overrides, origins)
    if not cfg.privacy.user_level:
        raise FedembedError("fedembed plan predicts what user-level DP leaves of the signal: set "
                            "privacy.user_level = true (and a noise_multiplier or target_epsilon)")
    if args.probe < 1:
        raise FedembedError(f"--probe must be >= 1, got {args.probe}")
    from fedembed.planning import run_plan

    plan = run_plan(cfg, Path(args.out), args.probe)
    print(json.dumps(plan, indent=2) if args.json else plan["verdict"])
    return 0


def parse_value(raw: str) -> Any:
    import tomllib

    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _headline(report: dict[str, Any]) -> dict[str, Any]:
    """The family's headline figures, federated and centralized (fedembed.models.FamilyReport.headline)."""
    return report.get("headline") or {"quality": report.get("quality")}


def _existing(path: Path) -> Path:
    """`path`, or the error a missing one gets, before anything is imported to read it."""
    if not path.is_dir() and not path.is_file():
        raise FedembedError(f"no run directory or vectors file at {path}")
    return path


def _vectors(path: Path):
    from fedembed.export import load_vectors

    if _existing(path).is_dir():
        from fedembed.loader import load

        return load(path).vectors
    try:
        return load_vectors(path)
    except FedembedError:
        raise  # already one line naming the file (and line)
    except (ValueError, UnicodeDecodeError, EOFError, OSError) as exc:
        raise FedembedError(f"cannot read vectors from {path}: expected word2vec text or binary, "
                            f"or .npy with its .vocab.txt ({exc})") from exc


def _sweep(args: argparse.Namespace) -> int:
    from fedembed import sweep

    sweep.run(args.config, args.out, progress=not args.quiet)
    out = Path(args.out) if args.out else Path("runs") / "sweeps" / sweep.load(args.config).name
    print((out / "summary.md").read_text(encoding="utf-8"))
    print(f"sweep directory: {out}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    path = _existing(Path(args.path))
    if path.is_dir():  # a run: its family's figures (word similarity, ranking metrics, ...)
        from fedembed.loader import view

        family, run = view(path)
        result = family.evaluate(run, quick=args.no_analogies)
    else:
        from fedembed.eval.wordsim import evaluate, require_finite

        kv = _vectors(path)
        require_finite(kv, path)
        result = evaluate(kv, analogies=not args.no_analogies)
    print(json.dumps(result, indent=2))
    return 0


def _export(args: argparse.Namespace) -> int:
    path = _existing(Path(args.path))
    from fedembed.export import FORMATS, export

    if path.is_dir():  # a run: its family writes the format (word2vec's, or its own)
        from fedembed.loader import view

        family, run = view(path)
        written = family.export(run, Path(args.output), args.format)
    else:
        if args.format not in FORMATS:
            raise FedembedError(f"--format {args.format} needs a run directory (a vectors file holds only "
                                f"word vectors: {', '.join(FORMATS)})")
        kv = _vectors(path)
        written = export(list(kv.index_to_key), kv.vectors, Path(args.output), args.format)
    for p in written:
        print(p)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fedembed", description="Privacy-preserving federated embeddings.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    s = sub.add_parser("simulate", help="run a federation on this machine (Flower simulation runtime)")
    s.add_argument("--config", help="scenario TOML (default: the built-in default scenario)")
    s.add_argument("--out", default="runs/default", help="run directory (default: runs/default)")
    s.add_argument("--rounds", type=int, help="override federation.rounds")
    s.add_argument("--clients", type=int, help="override partition.num_clients")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="override any key, e.g. model.dim=50")
    s.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.add_argument("--dry-run", action="store_true",
                   help="validate the scenario and print the update pipeline it runs, without running it")
    s.set_defaults(func=_simulate)

    w = sub.add_parser("sweep", help="run a grid over one or two scenario keys (resumes a partly finished sweep)")
    w.add_argument("--config", required=True, help="sweep TOML (see fedembed/sweep.py, simulations/sweeps/)")
    w.add_argument("--out", help="sweep directory (default: runs/sweeps/NAME)")
    w.add_argument("--quiet", action="store_true", help="no progress bars")
    w.set_defaults(func=_sweep)

    pl = sub.add_parser("plan", help="predict what user-level DP leaves of the signal, before any training")
    pl.add_argument("--config", help="scenario TOML (default: the built-in default scenario)")
    pl.add_argument("--set", action="append", metavar="KEY=VALUE", help="override any key, e.g. privacy.target_epsilon=4")
    pl.add_argument("--rounds", type=int, help="override federation.rounds")
    pl.add_argument("--clients", type=int, help="override partition.num_clients")
    pl.add_argument("--out", default="runs/plan", help="where the scenario's data is prepared for the probe")
    pl.add_argument("--probe", type=int, default=48, help="users whose first update is probed (default 48)")
    pl.add_argument("--json", action="store_true", help="print the whole plan as JSON")
    pl.set_defaults(func=_plan)

    e = sub.add_parser("evaluate", help="a run's quality as its family measures it (word similarity and "
                                        "analogies, ranking metrics, ...), or a vectors file's word similarity")
    e.add_argument("path", help="run directory, word2vec .txt/.bin file, or .npy (with .vocab.txt)")
    e.add_argument("--no-analogies", action="store_true", help="leave out the slow figures (analogies)")
    e.set_defaults(func=_evaluate)

    x = sub.add_parser("export", help="write a run's (or a file's) vectors in another format")
    x.add_argument("path", help="run directory or vectors file")
    x.add_argument("output", help="output path")
    x.add_argument("--format", default="word2vec-text", choices=EXPORT_FORMATS,
                   help="word2vec-text | word2vec-binary | npy: the row vectors (words, items); "
                        "fasttext-bin: a fasttext run with its n-grams (gensim's load_facebook_model); "
                        "sentence-npz: a sentence run's fine-tuned part")
    x.set_defaults(func=_export)

    # `fedembed certs | node-keys | client | deploy` (deployment runtime): fedembed/deploy/commands.py.
    from fedembed.deploy.commands import add_subcommands as add_deploy_subcommands
    add_deploy_subcommands(sub)

    # `fedembed serve` (gRPC EmbeddingService): defined in fedembed/serving/cli.py.
    from fedembed.serving.cli import add_serve_parser
    add_serve_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("fedembed").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    logging.getLogger("flwr").propagate = False  # Flower prints its own lines; the root handler would repeat them
    try:
        return args.func(args)
    except FedembedError as exc:
        print(f"fedembed: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
