"""``python -m bench.selection --preset default|smoke|gpu [--out DIR]``."""
from __future__ import annotations

import argparse
from pathlib import Path

from bench.selection.presets import PRESETS
from bench.selection.run import REPO, rewrite_page, run
from curate.core import CurateError


def main() -> None:
    parser = argparse.ArgumentParser(description="Selection benchmark: selectors vs random at one token budget.")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="default")
    parser.add_argument("--out", type=Path, default=None, help="work directory (default: out/selection-<preset>)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the pool/target split and the selectors")
    parser.add_argument("--no-docs", action="store_true", help="do not write the docs/ results page")
    parser.add_argument("--page-only", action="store_true",
                        help="only rewrite the docs page from the finished run in --out (no computation)")
    args = parser.parse_args()
    preset = PRESETS[args.preset]
    out = args.out or REPO / "out" / f"selection-{preset.name}"
    try:
        if args.page_only:
            print(rewrite_page(preset, out.resolve(), REPO / "docs"))
        else:
            run(preset, out.resolve(), seed=args.seed, docs=None if args.no_docs else REPO / "docs",
                log=lambda m: print(m, flush=True))
    except CurateError as exc:  # bad input or setup: one line, no traceback
        raise SystemExit(f"error: {exc}") from None


if __name__ == "__main__":
    main()
