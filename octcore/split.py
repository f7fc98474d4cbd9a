"""Make a patient-disjoint train/val/test split and save it for every later run.

    python -m octcore.split DATA --out split.json [--test-size 0.2] [--val-size 0.1] [--seed 0]

In the train/val/test layout the official test folder stays the test set (its patients' images
elsewhere are excluded) unless --resplit is given; a flat folder is split by patient. Patients
whose ids differ but who share an identical image are kept on the same side. Both trainers and
`compare` take the file with --split-file, so every model is trained and scored on the same patients.
"""

import argparse
import sys

from octcore.data import DataError, derive_split, discover, save_split


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m octcore.split", description=__doc__.split("\n\n")[0])
    parser.add_argument("data", help="dataset folder (either layout)")
    parser.add_argument("--out", required=True, help="where to write the split file (JSON)")
    parser.add_argument(
        "--test-size", type=float, default=0.2, help="share of patients held out for test (default 0.2)"
    )
    parser.add_argument("--val-size", type=float, default=0.1, help="share of scans for validation (default 0.1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--resplit", action="store_true", help="ignore the official test folder and split all scans by patient"
    )
    args = parser.parse_args(argv)
    for name, share in (("--test-size", args.test_size), ("--val-size", args.val_size)):
        if not 0 < share < 1:
            parser.error(f"{name} must be above 0 and below 1, not {share}")
    try:
        scans = discover(args.data)
        split, groups = derive_split(
            scans, args.test_size, args.val_size, args.seed, not args.resplit, progress=sys.stderr.isatty()
        )
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    save_split(
        args.out,
        scans,
        split,
        groups,
        test_size=args.test_size,
        val_size=args.val_size,
        seed=args.seed,
        keep_official_test=not args.resplit,
    )
    for name in ("train", "val", "test", "excluded"):
        chosen = [s for s, t in zip(scans, split) if t == name]
        if chosen:
            print(f"{name:<9} {len(chosen):>6} scans {len({s.patient_id for s in chosen}):>6} patients")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
