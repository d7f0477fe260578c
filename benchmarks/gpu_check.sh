#!/usr/bin/env bash
# Issue 13's GPU checks on a lent GPU machine, in two calls of under 8 minutes each. Each step
# writes $OUT/STEP.txt (its output and exit code); a failing step does not stop the next.
#
# bash benchmarks/gpu_check.sh speed       (about 6 minutes)
#   env.txt              GPU, driver, torch / triton / nvcc versions
#   scan.txt             selective scan fwd+bwd per backend at the MNIST preset, errors vs float64
#   train_speed.txt      s/epoch of every family, ST and PGD-AT, MNIST and CIFAR-10, fp32 and AMP
#   cuda_tests.txt       the tests that need CUDA (S4 and Mamba on CUDA against the CPU)
# bash benchmarks/gpu_check.sh mamba-ssm   (about 7.5 minutes; the build stops after 4.5)
#   mamba_build.txt      mamba-ssm compiled for this GPU's architecture only
#   scan_mamba_ssm.txt   Triton against mamba-ssm's CUDA scan (goal: within 2x), and parity
#   mamba_speed.txt      Mamba (mamba-ssm kernel) against S4, MNIST PGD-AT epoch
#   cuda_tests_mamba_ssm.txt  the same tests with mamba-ssm: its kernel against our scan
#
# The machine has PyTorch, Triton and nvcc but no network: fetch the mamba-ssm source here first
# (`bash benchmarks/gpu_check.sh --fetch` puts it in .whl/, which git ignores) and carry .whl.
set -u
MAMBA_SSM=mamba_ssm-2.3.2.post1

if [ "${1:-}" = "--fetch" ]; then
    mkdir -p .whl
    url=$(python3 -c "
import json, urllib.request
project = json.load(urllib.request.urlopen('https://pypi.org/pypi/mamba-ssm/json'))
files = project['releases']['${MAMBA_SSM#mamba_ssm-}']
print(next(f['url'] for f in files if f['packagetype'] == 'sdist'))")
    curl -sSfL -o ".whl/$MAMBA_SSM.tar.gz" "$url" && ls -l ".whl/$MAMBA_SSM.tar.gz"
    exit
fi

part=${1:-speed}
if [ "$part" != speed ] && [ "$part" != mamba-ssm ]; then
    echo "usage: bash benchmarks/gpu_check.sh [--fetch | speed | mamba-ssm]" >&2
    exit 2
fi
OUT=${OUT:-gpu_check_out}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
py=python3

step() {  # step NAME SECONDS COMMAND...: run it with a time limit into $OUT/NAME.txt
    local name=$1 limit=$2
    shift 2
    echo "== $name ($(date +%T))"
    timeout "$limit" "$@" >"$OUT/$name.txt" 2>&1
    echo "rc=$?" >>"$OUT/$name.txt"
    tail -n 4 "$OUT/$name.txt"
}

case $part in
speed)
    {
        nvidia-smi
        $py -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda,
'triton', triton.__version__, torch.cuda.get_device_name(), torch.cuda.get_device_capability())"
        nvcc --version | tail -n 2
    } >"$OUT/env.txt" 2>&1
    step scan 90 $py benchmarks/scan_speed.py --preset mnist --backends chunked,full_state,triton
    step train_speed 240 bash -c "
    for preset in mnist cifar10; do for amp in '' --amp; do
        $py benchmarks/train_speed.py --preset \$preset --methods st,pgd \$amp
    done; done"
    step cuda_tests 60 $py -m pytest -q -p no:cacheprovider tests/test_mamba.py tests/test_s4.py -k cuda
    ;;
mamba-ssm)
    # mamba-ssm's setup.py compiles for nine architectures whatever TORCH_CUDA_ARCH_LIST says:
    # the line inserted before its ABI hack keeps only this GPU's.
    step mamba_build 270 bash -c "
    set -e
    arch_list=\$($py -c 'import torch; print(\"%d.%d\" % torch.cuda.get_device_capability())')
    arch=\${arch_list/./}
    rm -rf /tmp/$MAMBA_SSM && tar xzf .whl/$MAMBA_SSM.tar.gz -C /tmp
    sed -i \"s|^    # HACK: The compiler flag|    cc_flag = ['-gencode', 'arch=compute_\$arch,code=sm_\$arch']\n&|\" /tmp/$MAMBA_SSM/setup.py
    grep -n \"cc_flag = .*sm_\$arch'\" /tmp/$MAMBA_SSM/setup.py
    MAMBA_FORCE_BUILD=TRUE MAX_JOBS=\$(nproc) TORCH_CUDA_ARCH_LIST=\$arch_list \
        $py -m pip install --no-build-isolation --no-deps --no-index --target /tmp/site /tmp/$MAMBA_SSM
    PYTHONPATH=/tmp/site $py -c 'from mamba_ssm.ops.selective_scan_interface import selective_scan_fn; print(\"mamba_ssm imports\")'
    "
    export PYTHONPATH="/tmp/site:$PYTHONPATH"
    step scan_mamba_ssm 60 $py benchmarks/scan_speed.py --preset mnist --backends triton,mamba_ssm
    step mamba_speed 60 $py benchmarks/train_speed.py --preset mnist --models s4,mamba --methods pgd
    step cuda_tests_mamba_ssm 60 $py -m pytest -q -p no:cacheprovider tests/test_mamba.py -k cuda
    ;;
esac
