"""The `fedembed` command: simulate, evaluate, export."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from fedembed.errors import FedembedError


def _simulate(args: argparse.Namespace) -> int:
    from fedembed.simulation import simulate

    overrides: dict[str, Any] = {}
    if args.rounds is not None:
        overrides["federation.rounds"] = args.rounds
    if args.clients is not None:
        overrides["partition.num_clients"] = args.clients
    for item in args.set or []:
        key, _, raw = item.partition("=")
        if not _:
            raise FedembedError(f"--set expects KEY=VALUE, got {item!r}")
        overrides[key] = parse_value(raw)
    report = simulate(args.config, args.out, resume=args.resume, overrides=overrides, progress=not args.quiet)
    print(json.dumps(_headline(report), indent=2))
    print(f"run directory: {args.out}")
    return 0


def parse_value(raw: str) -> Any:
    import tomllib

    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _headline(report: dict[str, Any]) -> dict[str, Any]:
    def figures(q: dict[str, Any]) -> dict[str, Any]:
        return {"wordsim353.spearman": q["wordsim353"]["spearman"], "simlex999.spearman": q["simlex999"]["spearman"],
                "analogy.accuracy": q.get("analogy", {}).get("accuracy")}
    out = {"federated": figures(report["quality"])}
    if "baseline" in report:
        out["gensim (centralized)"] = figures(report["baseline"]["gensim"])
    return out


def _vectors(path: Path):
    from fedembed.export import load_vectors
    from fedembed.loader import load

    if path.is_dir():
        return load(path).vectors
    if not path.is_file():
        raise FedembedError(f"no run directory or vectors file at {path}")
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
    from fedembed.checkpoint import CHECKPOINT
    from fedembed.eval.wordsim import evaluate, require_finite

    path = Path(args.path)
    kv = _vectors(path)
    require_finite(kv, path / CHECKPOINT if path.is_dir() else path)  # a run's vectors come from its checkpoint
    result = evaluate(kv, analogies=not args.no_analogies)
    print(json.dumps(result, indent=2))
    return 0


def _export(args: argparse.Namespace) -> int:
    from fedembed.export import export

    kv = _vectors(Path(args.path))
    for p in export(list(kv.index_to_key), kv.vectors, Path(args.output), args.format):
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
    s.set_defaults(func=_simulate)

    w = sub.add_parser("sweep", help="run a grid over one or two scenario keys (resumes a partly finished sweep)")
    w.add_argument("--config", required=True, help="sweep TOML (see fedembed/sweep.py, simulations/sweeps/)")
    w.add_argument("--out", help="sweep directory (default: runs/sweeps/NAME)")
    w.add_argument("--quiet", action="store_true", help="no progress bars")
    w.set_defaults(func=_sweep)

    e = sub.add_parser("evaluate", help="WordSim353 / SimLex999 / analogies of a run or a vectors file")
    e.add_argument("path", help="run directory, word2vec .txt/.bin file, or .npy (with .vocab.txt)")
    e.add_argument("--no-analogies", action="store_true")
    e.set_defaults(func=_evaluate)

    x = sub.add_parser("export", help="write a run's (or a file's) vectors in another format")
    x.add_argument("path", help="run directory or vectors file")
    x.add_argument("output", help="output path")
    x.add_argument("--format", default="word2vec-text", choices=["word2vec-text", "word2vec-binary", "npy"])
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
