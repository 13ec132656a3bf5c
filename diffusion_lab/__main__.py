"""The course's command line: ``python -m diffusion_lab doctor|student ...`` (chapter 00)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _doctor(args: argparse.Namespace) -> int:
    from diffusion_lab.doctor import report, run_checks

    findings = run_checks()
    print(report(findings))
    return 0 if all(f.ok for f in findings) else 1


def _student(args: argparse.Namespace) -> int:
    from diffusion_lab.student import SolutionMarkerError, make_student_copy

    notebooks = [Path(p) for p in args.notebooks] or sorted(Path("chapters").glob("[0-9][0-9]_*.ipynb"))
    if not notebooks:
        print("no chapters found: run this from the course folder or name the notebooks", file=sys.stderr)
        return 2
    for nb in notebooks:
        try:
            dest, n = make_student_copy(nb, args.out)
        except (FileNotFoundError, SolutionMarkerError, ValueError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(f"{dest}: {n} solution(s) blanked")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m diffusion_lab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("doctor", help="check that this machine is ready for the course")
    p.set_defaults(func=_doctor)
    p = sub.add_parser("student", help="write copies of the chapters with the exercise solutions blanked")
    p.add_argument("notebooks", nargs="*", help="chapters to copy (default: chapters/NN_*.ipynb)")
    p.add_argument("--out", default="student", help="folder for the copies (default: ./student)")
    p.set_defaults(func=_student)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
