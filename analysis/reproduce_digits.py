"""The paper's grid on `digits`, evaluated, reported and bundled as the zoo.

The runs of `ssmprobe.grid.paper_grid` (S4, DSS, S5, Mega, Mamba x ST, PGD-AT, TRADES; S4 and
DSS x AdS ReLU, Tanh, Sigmoid x PGD-AT, TRADES) at the digits preset with each family's
departures (`registry.FAMILY_PRESETS`, `training.fit.FAMILY_TRAIN_PRESETS`), cheapest first, each a
submitit job on this machine (`--jobs 2` on two cores): training, resumed when a job was
killed, then PGD-10 and AutoAttack of best.pt and last.pt on all 360 test digits. Finished runs
are skipped. With `--out`, `ssmprobe report` then writes the tables, figures and report there;
`--bundle` copies every finished run with the report's cached results into checkpoints/
(`bundle_checkpoints.bundle`: best.pt after adversarial training, last.pt after standard; seed 0
only, the zoo holds one run per setting). `--seeds 1,2` trains more seeds of the same settings
(`s4_pgd_seed1`); `ssmprobe table` then adds the mean and spread over seeds (`table_seeds.md`).

    python analysis/reproduce_digits.py [--runs runs/digits] [--out figures] [--bundle]
        [--models s4,dss,s5,mega,mamba] [--methods st,pgd,trades] [--only 'mamba_*,*_ads-*']
        [--seeds 0,1,2] [--attack pgd10] [--jobs 2] [--dry-run]
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bundle_checkpoints import bundle

from ssmprobe.cli.grid import main
from ssmprobe.grid import finished

if __name__ == "__main__":
    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--bundle", action="store_true", help="copy finished runs to checkpoints/")
    flags, rest = extra.parse_known_args()
    grid, runs, launched = main(rest, ("digits",), __doc__, n_eval=360, parents=[extra])
    if flags.bundle and launched:
        which = {r.name: "last" if r.method == "st" else "best" for r in grid if r.seed == 0}
        done = [name for name in which if finished(runs / name)]
        bundle(runs, [f"{name}:{name}:{which[name]}" for name in done])
