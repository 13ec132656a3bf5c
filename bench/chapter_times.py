"""How long each chapter takes to run top to bottom, and its peak memory, in quick and full mode.

    .venv/bin/python bench/chapter_times.py             # every chapter, both modes
    .venv/bin/python bench/chapter_times.py 00 01 02    # some chapters
    .venv/bin/python bench/chapter_times.py --modes quick

Each run happens in a fresh process with a fresh kernel (as a learner's "Restart and run all"),
timed from kernel start to the end of the last cell. Peak memory is the kernel process's maximum
resident set size. The machine is described in the results; close other work while measuring. Results go to
bench/results/chapter_times.json and .md; the README's chapter table quotes the .md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT))


def run_one(py: Path, quick: bool) -> dict:
    """Execute one chapter in this process's child kernel; report seconds and the kernel's peak RSS."""
    from tools.notebooks import execute, read_chapter

    nb = read_chapter(py)
    seconds = execute(nb, ROOT / "chapters", quick=quick)
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # Linux: KiB, largest waited child
    return {"seconds": round(seconds, 1), "peak_rss_mib": round(peak_kib / 1024)}


def measure(py: Path, mode: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--one", str(py), "--modes", mode],
                         capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"{py.name} failed in {mode} mode:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("chapters", nargs="*", help="chapter number prefixes (default: all)")
    parser.add_argument("--modes", default="quick,full", help="comma-separated: quick, full")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    modes = args.modes.split(",")
    if args.one:
        print(json.dumps(run_one(Path(args.one), quick=modes[0] == "quick")))
        return 0

    sources = sorted((ROOT / "chapters").glob("[0-9][0-9]_*.py"))
    if args.chapters:
        sources = [p for p in sources if any(p.name.startswith(c) for c in args.chapters)]
    results = {}
    for py in sources:
        for mode in modes:
            r = measure(py, mode)
            results.setdefault(py.stem, {})[mode] = r
            print(f"{py.stem:<24} {mode:<5} {r['seconds']:>7.1f} s  peak {r['peak_rss_mib']:>5} MiB", flush=True)

    machine = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
               "python": platform.python_version(), "date": dt.date.today().isoformat()}
    try:
        import torch
        machine["torch"] = torch.__version__
        machine["threads"] = torch.get_num_threads()
    except ImportError:
        pass
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "chapter_times.json"
    old = json.loads(path.read_text()) if path.exists() else {}
    merged = {**old.get("chapters", {})}
    for name, by_mode in results.items():
        merged[name] = {**merged.get(name, {}), **by_mode}
    path.write_text(json.dumps({"machine": machine, "chapters": merged}, indent=2) + "\n")

    lines = [f"# Chapter run times ({machine['date']}, {machine['cores']} cores, torch {machine.get('torch')})", "",
             "Measured by `.venv/bin/python bench/chapter_times.py`: top to bottom in a fresh kernel, "
             "kernel start-up included; peak = the kernel's maximum resident memory.", "",
             "| chapter | quick mode | full mode | peak memory (full) |", "|---|---|---|---|"]
    for name, by_mode in sorted(merged.items()):
        q, f = by_mode.get("quick"), by_mode.get("full")
        lines.append(f"| {name} | {q['seconds'] if q else '–'} s | {f['seconds'] if f else '–'} s | "
                     f"{f['peak_rss_mib'] if f else '–'} MiB |")
    quick_total = sum(v["quick"]["seconds"] for v in merged.values() if "quick" in v)
    lines += ["", f"All chapters in quick mode, one after another: {quick_total:.0f} s."]
    (RESULTS / "chapter_times.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {path.relative_to(ROOT)} and chapter_times.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
