"""Benchmark: the parsing workers' work per mail, single-threaded, this tree beside a baseline
checkout in the same run (prints figures, asserts none).

    .venv/bin/python -m tests.bench_read [--baseline DIR] [--count 400] [--backlog FILE]

Each mail of a realistic backlog goes through `daemon.intake.workers.read_guarded(raw,
limits)` (what a worker runs for it) one after the other in one process: wall and CPU
milliseconds per mail (median, mean, p95), then a second pass under cProfile for the share
of the time each top function takes. The backlog is the one `tests/bench_intake.py` caches in
the temp directory (the newest `vanthu-backlog-*.json`), or 600 mails drawn with its
`backlog(600, 17)`; its first `--count` mails are read.

`--baseline DIR` runs the same measure on another checkout (a git worktree of an older
commit: `git worktree add --detach DIR COMMIT`), in a subprocess with DIR first on sys.path,
and prints both side by side.
"""

from __future__ import annotations

import argparse
import base64
import cProfile
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TOP = 14  # functions shown from the profile


def _mails(backlog: str | None, count: int) -> list[bytes]:
    """The first `count` mails of the cached backlog (or of a freshly drawn one)."""
    if backlog is None:
        cached = sorted(Path(tempfile.gettempdir()).glob("vanthu-backlog-*.json"),
                        key=lambda p: p.stat().st_mtime)
        backlog = str(cached[-1]) if cached else None
    if backlog is not None:
        saved = json.loads(Path(backlog).read_text())
        return [base64.b64decode(m) for m in saved["mails"][:count]]
    sys.path.insert(0, str(ROOT))
    from tests.bench_intake import backlog as draw

    return draw(600, 17)[0][:count]


def _short(func: tuple[str, int, str]) -> str:
    """A profile key as `module/file.py:line function`, paths cut to the package."""
    path, line, name = func
    for marker in ("/daemon/", "/site-packages/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{path}:{line} {name}" if line else name


def measure(mails: list[bytes]) -> dict[str, Any]:
    """Run in the tree first on sys.path: times per mail and the profile's top functions."""
    from daemon.config import LimitsConfig
    from daemon.intake.workers import read_guarded

    limits = LimitsConfig()
    read_guarded(mails[0], limits)  # lazy imports and caches outside the figures
    wall, cpu, bad = [], [], 0
    for raw in mails:
        start, start_cpu = time.perf_counter(), time.process_time()
        result = read_guarded(raw, limits)
        cpu.append((time.process_time() - start_cpu) * 1000)
        wall.append((time.perf_counter() - start) * 1000)
        bad += not hasattr(result, "mail")
    profile = cProfile.Profile()
    profile.enable()
    for raw in mails:
        read_guarded(raw, limits)
    profile.disable()
    stats = pstats.Stats(profile)
    entries: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total = sum(tt for _, _, tt, _, _ in entries.values())
    cumulative = sorted(((ct, _short(f)) for f, (_, _, _, ct, _) in entries.items()),
                        reverse=True)
    own = sorted(((tt, _short(f)) for f, (_, _, tt, _, _) in entries.items()), reverse=True)
    return {
        "mails": len(mails), "unreadable": bad, "wall": wall, "cpu": cpu,
        "cumulative": [(round(100 * t / total, 1), n) for t, n in cumulative[:TOP * 2]
                       if "read_guarded" not in n and "builtins.exec" not in n
                       ][:TOP],
        "own": [(round(100 * t / total, 1), n) for t, n in own[:TOP]],
    }


def _summary(times: list[float]) -> str:
    ordered = sorted(times)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return (f"median {statistics.median(ordered):6.2f}  mean {statistics.fmean(ordered):6.2f}"
            f"  p95 {p95:6.2f}")


def _run_in(tree: Path, backlog: str | None, count: int) -> dict[str, Any]:
    """`measure` in a subprocess with `tree` first on sys.path."""
    code = (f"import sys, importlib.util; sys.path.insert(0, {str(tree)!r})\n"
            f"spec = importlib.util.spec_from_file_location('bench_read', {__file__!r})\n"
            "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
            "module._child()")
    env = {**os.environ, "BENCH_READ_ARGS": json.dumps([backlog, count])}
    done = subprocess.run([sys.executable, "-B", "-c", code], env=env, cwd=str(tree),
                          check=True, capture_output=True, text=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _child() -> None:
    backlog, count = json.loads(os.environ["BENCH_READ_ARGS"])
    import daemon

    assert Path(daemon.__file__).resolve().is_relative_to(Path(sys.path[0]).resolve()), \
        daemon.__file__
    print(json.dumps(measure(_mails(backlog, count))))


def _print(results: dict[str, dict[str, Any]]) -> None:
    names = list(results)
    first = results[names[0]]
    print(f"{first['mails']} mails, read_guarded one after the other, ms per mail")
    for key in ("wall", "cpu"):
        for name in names:
            print(f"  {key:4} {name:9} {_summary(results[name][key])}")
    if len(names) == 2:
        old, new = (statistics.fmean(results[n]["cpu"]) for n in names)
        print(f"  cpu mean {names[1]} / {names[0]}: {new / old:.2f}x ({old / new:.2f}x faster)")
    for name in names:
        print(f"  unreadable ({name}): {results[name]['unreadable']}")
    for kind, title in (("cumulative", "cumulative share"), ("own", "own time share")):
        for name in names:
            print(f"\nprofile, {title} ({name}):")
            for share, func in results[name][kind]:
                print(f"  {share:5.1f}%  {func}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", type=Path, help="an older checkout to compare with")
    parser.add_argument("--count", type=int, default=400)
    parser.add_argument("--backlog", help="a vanthu-backlog-*.json file")
    args = parser.parse_args()
    results: dict[str, dict[str, Any]] = {}
    if args.baseline:
        results["baseline"] = _run_in(args.baseline.resolve(), args.backlog, args.count)
    results["this"] = _run_in(ROOT, args.backlog, args.count)
    _print(results)


if __name__ == "__main__":
    main()
