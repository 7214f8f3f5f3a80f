"""How far the deterministic scorer (rubric v1) agrees with the hand-labelled set, per dimension.

Run: python bench/agreement.py [--disagreements]
Prints exact agreement, within-one agreement and Cohen's kappa for D1–D5 against
tests/fixtures/labelled/answers.yaml, and the targets it is held to (exact ≥ 85% on D1, D4, D5; ≥ 75% on D2, D3).
"""

import sys
from pathlib import Path

from molting.evaluate.rubric import labelled_agreement

LABELLED = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "labelled" / "answers.yaml"
TARGETS = {"D1": 0.85, "D2": 0.75, "D3": 0.75, "D4": 0.85, "D5": 0.85}


def main() -> int:
    result = labelled_agreement(LABELLED)
    n = next(iter(result.figures.values()))["n"]
    print(f"rubric v1 vs {n} hand-labelled answers ({LABELLED.relative_to(LABELLED.parents[3])})")
    print(f"{'dim':<4} {'exact':>7} {'within-1':>9} {'kappa':>7} {'target':>7}")
    missed = 0
    for dim, f in result.figures.items():
        ok = f["exact"] >= TARGETS[dim]
        missed += not ok
        kappa = f"{f['kappa']:.3f}" if f["kappa"] is not None else "n/a"
        print(
            f"{dim:<4} {f['exact']:>7.1%} {f['within_one']:>9.1%} {kappa:>7} {TARGETS[dim]:>6.0%}"
            f" {'ok' if ok else 'MISSED'}"
        )
    if "--disagreements" in sys.argv:
        for d in result.disagreements:
            print(f"{d['id']} {d['dim']}: label {d['label']}, scorer {d['scorer']} — {d['reason']} {d['evidence']}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
