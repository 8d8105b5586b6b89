"""`bench` command line: subcommands with examples. User mistakes → one `error:` line, exit 2."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import fields
from pathlib import Path
from typing import get_args, get_type_hints

from bench.errors import BenchError, full_disk_message, out_of_space
from bench.options import Options

EXAMPLES = {
    "run": """examples:
  bench run --variants cgan,acgan,lsgan --preset smoke --output runs/smoke
  bench run --variants cgan --preset standard --seeds 3 --set embed=concat
  bench run --variants cgan,acgan --preset search --budget smoke --num-samples 6 --seeds 3 \\
            --search optuna --scheduler asha --output runs/search
  bench run --resume --output runs/search        # continue after a crash or Ctrl-C
  bench run --variants cgan --preset standard --address auto --storage s3://bucket/bench \\
            --tracking-uri http://mlflow:5000 --gpus-per-trial 0.25""",
    "list": "examples:\n  bench list\n  bench list -v      # with every config field and its default",
    "report": """examples:
  bench report --output runs/smoke
  bench report --tracking-uri sqlite:///runs/smoke/mlflow.db --experiment smoke --output /tmp/again""",
    "ui": """examples:
  bench ui --output runs/smoke
  bench ui --tracking-uri sqlite:///runs/smoke/mlflow.db --port 5001""",
    "sample": "examples:\n  bench sample 3f2a… --output runs/smoke --n 10000 --out cgan.npz\n  bench evaluate cgan.npz",
    "evaluate": ("examples:\n  bench evaluate samples.npz\n  bench evaluate samples.npz --json --seed 0\n"
                 "  bench evaluate samples.npz --no-cas --floors\n  bench evaluate samples.npz --split val"),
    "evaluator": "examples:\n  bench evaluator check\n  bench evaluator train --seed 0 --out /tmp/evaluator.pt",
    "data": "examples:\n  bench data verify --data-dir ../shared/data/mnist\n  bench data fetch",
}


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not usage + traceback-looking noise
        raise BenchError(f"{message} (see `{self.prog} --help`)")


def _sub(subs, name: str, help_text: str) -> argparse.ArgumentParser:
    return subs.add_parser(name, help=help_text, description=help_text, epilog=EXAMPLES.get(name),
                           formatter_class=argparse.RawDescriptionHelpFormatter)


def _store_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--output", help="experiment folder written by `bench run` (reads its experiment.json)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: the --output folder's store)")
    p.add_argument("--experiment", help="MLflow experiment name (with --tracking-uri)")


def _add_options(p: argparse.ArgumentParser) -> None:
    """One argument per field of bench.options.Options that has a help text."""
    hints = get_type_hints(Options)
    for f in fields(Options):
        if not f.metadata.get("help"):
            continue
        flag = f.metadata["flag"] or "--" + f.name.replace("_", "-")
        kw = {"dest": f.name, "help": f.metadata["help"], "metavar": f.metadata["metavar"]}
        if f.metadata["repeat"]:
            kw |= {"action": "append", "default": []}
        else:
            types = [t for t in get_args(hints[f.name]) or [hints[f.name]] if t is not type(None)]
            # Fields that `parse` turns into something else arrive as the text typed.
            kw |= {"type": str if f.metadata["parse"] else types[0], "default": None}
        p.add_argument(flag, **kw)


def options_from(args: argparse.Namespace, argv: list[str]) -> Options:
    """Options from parsed `bench run` arguments: given values parsed, absent ones left at their defaults."""
    given = {}
    for f in fields(Options):
        value = getattr(args, f.name, None)
        if f.metadata.get("help") and value is not None:
            given[f.name] = f.metadata["parse"](value) if f.metadata["parse"] else value
    return Options(**given, command=shlex.join(["bench", *argv]))


def _add_maintenance(subs) -> None:
    """`bench evaluator …` and `bench data …`: the evaluator's weights and the MNIST files."""
    ev = _sub(subs, "evaluator", "train or check the MNIST evaluator")
    evs = ev.add_subparsers(dest="action", required=True, parser_class=Parser)
    t = evs.add_parser("train", help="train it reproducibly (seeded) on MNIST train")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--epochs", type=int, default=None)
    t.add_argument("--out", required=True)
    t.add_argument("--data-dir")
    c = evs.add_parser("check", help="print test accuracy and sha256 of the shipped (or given) weights")
    c.add_argument("--weights", help="weights file (default: the shipped ones)")
    c.add_argument("--data-dir")

    d = _sub(subs, "data", "fetch or verify MNIST")
    ds = d.add_subparsers(dest="action", required=True, parser_class=Parser)
    f = ds.add_parser("fetch", help="find or download MNIST, verify md5, cache it")
    f.add_argument("--data-dir")
    v = ds.add_parser("verify", help="check the md5 of each file in a folder")
    v.add_argument("--data-dir")


def build_parser() -> Parser:
    p = Parser(prog="bench", description="Compare GAN variants honestly: Ray Tune trials, a shipped MNIST "
               "evaluator, MLflow records, markdown reports.")
    subs = p.add_subparsers(dest="cmd", required=True, parser_class=Parser)

    r = _sub(subs, "run", "train variants as Ray Tune trials, score them, log to MLflow, write the report")
    _add_options(r)
    r.add_argument("--resume", action="store_true", help="continue the experiment in --output")

    ls = _sub(subs, "list", "show the registered variants")
    ls.add_argument("-v", "--verbose", action="store_true", help="also list config fields with defaults")

    rep = _sub(subs, "report", "write report.md (+ results.csv/json) from the MLflow store")
    _store_args(rep)

    ui = _sub(subs, "ui", "start the MLflow UI on an experiment's store (bound to 127.0.0.1)")
    _store_args(ui)
    ui.add_argument("--port", type=int, default=5000)
    ui.add_argument("--host", default="127.0.0.1", help="interface to bind; anything else exposes the UI")
    ui.add_argument("--workers", type=int, default=1,
                    help="server worker processes (MLflow's own default is 4; one is plenty for one reader)")

    s = _sub(subs, "sample", "regenerate label-balanced samples from a finished run's checkpoint")
    s.add_argument("run_id")
    _store_args(s)
    s.add_argument("--n", type=int, default=10000)
    s.add_argument("--seed", type=int, help="noise seed (default: the run's seed, as its final evaluation)")
    s.add_argument("--out", required=True, help="samples file to write (.npz)")

    e = _sub(subs, "evaluate", "score a samples file (.npz: images, optional labels) with the evaluator")
    e.add_argument("samples")
    e.add_argument("--json", action="store_true", help="print JSON")
    e.add_argument("--seed", type=int, default=0,
                   help="seed of the KID subsets and the CAS classifier (a run's seed reproduces it)")
    e.add_argument("--no-cas", action="store_true",
                   help="skip eval/cas (it trains a classifier on the samples: the slow metric)")
    e.add_argument("--floors", action="store_true",
                   help="also score N real training images the same way (floor/eval/*: what good looks like)")
    e.add_argument("--split", choices=("test", "val"), default="test",
                   help="score against the test set or the validation split (the last 10k training images, "
                        "what search trials are scored on; a run's eval_split)")
    e.add_argument("--data-dir")

    _add_maintenance(subs)
    return p


def _store(args) -> tuple[str, str, str | None]:
    """(tracking uri, experiment, session) from --output's experiment.json or --tracking-uri/--experiment."""
    from bench.experiment import STATE, Session

    if args.tracking_uri:
        if not args.experiment:
            raise BenchError("--tracking-uri needs --experiment NAME")
        return args.tracking_uri, args.experiment, None
    if not args.output:
        raise BenchError("say which experiment: --output DIR (of a bench run) or --tracking-uri URI --experiment NAME")
    out = Path(args.output)
    if not (out / STATE).is_file():
        raise BenchError(f"{out} holds no bench experiment ({STATE} missing); check --output")
    s = Session.load(out)
    return s.state["tracking_uri"], s.state["experiment"], s.id


def cmd_run(args, argv: list[str]) -> int:
    from bench import experiment, registry

    if args.resume and not args.output:
        raise BenchError("--resume needs --output DIR of the experiment to continue")
    if not args.resume and not args.variants:
        raise BenchError(f"name the variants: --variants cgan,acgan (available: {', '.join(registry.names())})")
    opts = options_from(args, argv)  # under --resume only --output counts: the saved options win
    print(f"report: {experiment.run(opts, resume=args.resume)}")
    return 0


def cmd_list(args) -> int:
    from bench import registry
    from bench.config import describe
    from bench.recipe import RecipeConfig

    shared = describe(RecipeConfig)
    defaults = {name: default for name, default, _ in shared}
    for name in registry.names():
        cls = registry.get(name)
        print(f"{name:8s} {cls.summary}")
        if args.verbose:
            fields_ = describe(cls.Config)
            changed = [f"{k}={v!r}" for k, v, _ in fields_ if k in defaults and v != defaults[k]]
            if changed:
                print(f"    defaults: {', '.join(changed)}")
            for key, default, meaning in fields_:
                if key not in defaults:
                    print(f"    {key} = {default!r}  {meaning}")
    if args.verbose:
        print("\nconfig fields and parts every recipe shares (--set key=value; default, meaning, [choices]):")
        for key, default, meaning in shared:
            print(f"    {key} = {default!r}  {meaning}")
    return 0


def cmd_report(args) -> int:
    from bench.report import from_store

    uri, exp, session = _store(args)
    if not args.output:
        raise BenchError("--output DIR: where to write report.md")
    print(f"report: {from_store(uri, exp, session, Path(args.output))}")
    return 0


def cmd_ui(args) -> int:
    """`mlflow server` on the store, light: --workers processes and no job runner (MLflow's GenAI
    jobs; with its defaults it starts 17 processes). Prints the URL once the server answers."""
    import os
    import signal
    import subprocess

    from bench import store, tracking

    uri, experiment, _ = _store(args)
    experiment_id, _ = store.find_session(uri, experiment)
    tracking.tag_for_ui(uri, experiment_id)  # experiments made before bench set these tags
    if args.host != "127.0.0.1":
        print(f"warning: binding the MLflow UI to {args.host} exposes every run to that network", file=sys.stderr)
    if args.workers < 1:
        raise BenchError(f"--workers must be >= 1, got {args.workers}")
    _check_port_free(args.host, args.port)
    env = os.environ | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri, "--host",
                             args.host, "--port", str(args.port), "--workers", str(args.workers)],
                            env=env, start_new_session=True, stdout=sys.stderr)  # stdout: the link alone
    # The server has its own process group (its workers with it): stop them all however bench ends.
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    url = f"http://{args.host}:{args.port}"
    try:
        if _wait_for_http(f"{url}/health", proc):
            print(f"MLflow UI: {tracking.ui_link(url, experiment_id)}  (Ctrl-C stops it)", flush=True)
        return proc.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait()


def _check_port_free(host: str, port: int) -> None:
    import socket

    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError as e:
            raise BenchError(f"cannot serve on {host}:{port}: {e.strerror}; pass another --port") from None


def _wait_for_http(url: str, proc, timeout: float = 300) -> bool:
    """Poll url until it answers 200; False if the process ends first (its own error is on stderr)."""
    import time
    import urllib.request

    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return True
        except OSError:
            time.sleep(0.3)
    return False


def cmd_sample(args) -> int:
    from bench import npz, samples
    from bench.generator_model import load_trained, load_variant
    from bench.records import STATE_FILE
    from bench.store import client

    uri, _, _ = _store(args)
    if args.n < 2:
        raise BenchError(f"--n must be >= 2, got {args.n}")
    try:
        run = client(uri).get_run(args.run_id)
    except Exception:
        raise BenchError(f"no run {args.run_id!r} in {uri}; copy a run id from the report or `bench ui`") from None
    tags = run.data.tags
    ckpt = tags.get("bench.checkpoint")
    if ckpt and (Path(ckpt) / STATE_FILE).is_file():  # the fast path: Tune's checkpoint on this machine
        variant = load_trained(tags["variant"], json.loads(tags["bench.config"]), Path(ckpt) / STATE_FILE)
    elif "bench.model_uri" in tags:  # the generator logged to MLflow: all a tracking server needs
        variant = load_variant(uri, tags["bench.model_uri"])
    else:
        raise BenchError(f"run {args.run_id} has neither a logged generator nor a checkpoint on this machine "
                         f"({ckpt}); it failed, or ran elsewhere before bench logged generators")
    seed = variant.cfg.seed if args.seed is None else args.seed
    images, labels = samples.generate(variant, args.n, seed=seed)
    npz.save_samples(args.out, images, labels if variant.conditional else None,
                     codes=labels if variant.label_codes else None)
    print(f"wrote {args.n} samples of {run.info.run_name} (seed {seed}) to {args.out}")
    print(f"score them: bench evaluate {shlex.quote(args.out)} --seed {seed}")
    return 0


def cmd_evaluate(args) -> int:
    from bench import data, evaluator, metrics, npz

    images, labels = npz.load_samples(args.samples)
    net = evaluator.load()
    mnist = data.split(data.load_mnist(args.data_dir), args.split)
    if args.floors and len(images) > len(mnist.test_images):
        raise BenchError(f"--floors scores held-out real images at the samples' N, and there are only "
                         f"{len(mnist.test_images)}; evaluate at most that many samples with --floors")
    # test: the official split, all 60k training images the memorization reference; val: scored on
    # the last 10k training images, the first 50k (what a search trial trains on) the reference.
    ref = metrics.reference(net, mnist, cache_dir=data.cache_root() / "features")
    scores = metrics.evaluate(images, labels, evaluator=net, reference=ref, seed=args.seed, cas=not args.no_cas,
                              codes=npz.load_codes(args.samples))
    if args.floors:
        floor = metrics.floors(net, ref, len(images), seed=args.seed, cas=not args.no_cas)
        scores |= {f"floor/{key}": value for key, value in floor.items()}
    scores |= {"n": len(images), "evaluator_sha256": evaluator.WEIGHTS_SHA256, "seed": args.seed,
               "split": args.split}
    if args.json:
        print(json.dumps(scores, indent=1, sort_keys=True))
    else:
        for key, value in scores.items():
            name = key.removeprefix("floor/")
            arrow = "" if not name.startswith("eval/") else (" ↑" if metrics.higher_is_better(name) else " ↓")
            print(f"{key:28s} {value:.6g}{arrow}" if isinstance(value, float) else f"{key:28s} {value}")
    return 0


def cmd_evaluator(args) -> int:
    from bench import data, evaluator

    mnist = data.load_mnist(args.data_dir)
    if args.action == "train":
        kw = {"epochs": args.epochs} if args.epochs else {}
        net = evaluator.train(mnist, seed=args.seed, **kw)
        sha = evaluator.save(net, args.out)
        print(f"test accuracy {evaluator.accuracy(net, mnist.test_images, mnist.test_labels):.4%}  sha256 {sha}")
        print(f"wrote {args.out}")
        return 0
    net = evaluator.load(path=args.weights)
    acc = evaluator.accuracy(net, mnist.test_images, mnist.test_labels)
    sha = evaluator.file_sha256(args.weights) if args.weights else evaluator.WEIGHTS_SHA256
    print(f"test accuracy {acc:.4%} on {len(mnist.test_labels)} MNIST test images  sha256 {sha}")
    return 0


def cmd_data(args) -> int:
    from bench import data

    if args.action == "fetch":
        print(f"MNIST verified in {data.fetch(args.data_dir)}")
        return 0
    root = data.resolve_data_dir(args.data_dir)
    statuses = data.verify_dir(root)
    for name, status in statuses:
        print(f"{status:10s} {name}")
    bad = [f"{name} {status}" for name, status in statuses if status != "ok"]
    if bad:
        raise BenchError(f"MNIST in {root} is not usable ({', '.join(bad)}); `bench data fetch` "
                         "downloads verified copies, or point --data-dir at the official files")
    return 0


COMMANDS = {"list": cmd_list, "report": cmd_report, "ui": cmd_ui, "sample": cmd_sample,
            "evaluate": cmd_evaluate, "evaluator": cmd_evaluator, "data": cmd_data}


def main(argv: list[str] | None = None) -> int:
    from bench.experiment import Interrupted, terminated

    try:
        argv = sys.argv[1:] if argv is None else argv
        args = build_parser().parse_args(argv)
        if args.cmd == "run":
            return cmd_run(args, argv)
        return COMMANDS[args.cmd](args)
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (Interrupted, KeyboardInterrupt):
        out = getattr(locals().get("args"), "output", None) or "DIR"
        how = "stopped by SIGTERM" if terminated() else "interrupted"
        print(f"{how}; results so far are kept. Continue with: bench run --resume --output {out}",
              file=sys.stderr)
        return 143 if terminated() else 130
    except Exception as e:
        where = out_of_space(e)
        if where is None:
            raise
        args = locals().get("args")
        output = args.output if getattr(args, "cmd", None) == "run" else None
        print(f"error: {full_disk_message(where or output or '', output)}", file=sys.stderr)
        return 2

if __name__ == "__main__":
    sys.exit(main())
