"""Tables 1-2 of the paper: the grid on MNIST or CIFAR-10 at the Table 4 presets.

Every run (S4, DSS, S5, Mega, Mamba x ST, PGD-AT, TRADES; S4 and DSS x AdS ReLU, Tanh,
Sigmoid x PGD-AT, TRADES) is one submitit job: training (resumed from last.pt if a job was
killed), then PGD-10 and AutoAttack on best.pt and last.pt (`ssmprobe.grid`). Finished runs are
skipped. `--launcher slurm --gpus 4` spreads the jobs over a cluster, each training under
torchrun on 4 GPUs; `--dry-run` lists the runs with the GPU-hours measured epochs predict.
`--seeds 0,1,2` trains each setting with three seeds (the report adds their mean and spread);
a job that fails leaves the others running, and the same command retries it.

    python analysis/reproduce_paper.py --dataset mnist --dry-run
    python analysis/reproduce_paper.py --dataset cifar10 --launcher slurm --gpus 1 \\
        --partition gpu --extra "--data-dir /data" --out figures/cifar10
"""

from ssmprobe.cli.grid import main

if __name__ == "__main__":
    main(None, ("mnist", "cifar10", "mnist10k"), __doc__)
