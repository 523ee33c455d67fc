#!/usr/bin/env bash
# Every GPU check of the open issues in one run, for a session that has the device machine
# (about 15 device minutes, all tries together): the CUDA tests, the search speed on the
# ASNG-NAS CIFAR-10 space in fp32 and with concurrent forward passes, the per-op kernel options
# that decide how to make it faster (issue: search loop fast on the GPU), how well the latency
# table predicts CUDA networks, and the digits / mnist1d searches on CUDA. bf16 and the GC step
# ratios were measured in the first GPU session (RESULTS.md) and are not repeated.
# Phase 1 has the GPU to itself (the timings); phase 2 runs the rest in parallel. Results land in
# OUT_DIR: log.txt, four JSON files, the profile table and jobs.tgz (phase 2's logs and JSON; the
# device tool returns at most 8 files); copy the figures into benchmarks/RESULTS.md.
#
# The device machine has torch, pyyaml, tensorboard, scikit-learn, tqdm, matplotlib and pytest but
# no network; carry the rest as wheels. Once, here, in the repository root:
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
#     pydantic==2.13.4 pydantic_core==2.46.4 annotated-types==0.7.0 typing-inspection==0.4.2 mnist1d
# then: run(command="bash benchmarks/gpu_checks.sh $OUT", carry=[".whl"], timeout_s=590)
set -uo pipefail
out=${1:-${OUT:-gpu_out}}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
# Entry points (every built-in plugin) need the distribution installed, not only on the path.
log="$out/log.txt"
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . >>"$log" 2>&1 \
    || { cat "$log"; exit 1; }
{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
    python3 -c "import torch, sys; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'python', sys.version.split()[0])"
} 2>&1 | tee -a "$log"

step() {  # step NAME SECONDS COMMAND...: run one check under a time limit, log it, go on
    local name=$1 limit=$2
    shift 2
    echo "== $name ($(date +%T))" | tee -a "$log"
    timeout "$limit" "$@" 2>&1 | tee -a "$log" | tail -n 5
}
job() {  # job NAME SECONDS COMMAND...: the same in the background, logged to its own file
    local name=$1 limit=$2
    shift 2
    echo "== $name started ($(date +%T))" >>"$log"
    (timeout "$limit" "$@" >"$jobs/$name.log" 2>&1; echo "== $name exit $? ($(date +%T))" >>"$log") &
}
jobs=/tmp/gpu_jobs
mkdir -p "$jobs"
budget=${GPU_CHECKS_SECONDS:-540}  # the whole script; the device call's timeout sits above it

# Phase 1, the GPU to itself: everything that is a timing.
step search_speed_fp32 120 python3 benchmarks/search_speed.py --device cuda --iters 50 \
    --json "$out/search_speed_cuda.json" --profile "$out/profile_cuda.txt"
step search_speed_concurrent 60 python3 benchmarks/search_speed.py --device cuda --iters 30 \
    --concurrent-forwards --json "$out/search_speed_cuda_concurrent.json"
# Per-op options for a faster search (torch.compile'd and CUDA-graphed SepConv, BatchNorm kernels,
# one graph with conditional nodes for every architecture): what to build next for the speed goal.
step search_kernels 120 python3 benchmarks/search_kernels.py --device cuda \
    --json "$out/search_kernels_cuda.json"
step conditional_step 60 python3 benchmarks/conditional_step.py --device cuda \
    --json "$out/conditional_step_cuda.json"
step latency_table 40 python3 benchmarks/latency_table.py --config spaces/asng_nas_cifar10.yaml \
    --device cuda --archs 20 --json "$jobs/latency_cifar_cuda.json"  # packed in jobs.tgz

# Phase 2, in parallel: the CUDA tests, the digits search, and the MNIST-1D searched-vs-random
# benchmark on CUDA with one process per seed (it writes its JSON after every training).
left=$((budget - SECONDS - 15))
export OMP_NUM_THREADS=1
job pytest_gpu "$left" python3 -m pytest -q -p no:cacheprovider -k "cuda or gpu" tests/
job digits_search "$left" python3 -m nasframe search spaces/digits.yaml --set device=cuda \
    --out "$jobs/digits_cuda" --quiet
job mnist1d "$left" python3 benchmarks/mnist1d.py --device cuda --seeds 6 --jobs 6 \
    --random-per-seed 5 --json "$jobs/mnist1d_cuda.json"
wait
cp "$jobs/digits_cuda/summary.json" "$jobs/digits_cuda_summary.json" 2>/dev/null
tail -n 3 "$jobs"/*.log >>"$log"
(cd "$jobs" && tar czf "$out/jobs.tgz" ./*.log ./*.json)
nvidia-smi --query-gpu=memory.used --format=csv >>"$log" 2>&1
echo "done after ${SECONDS}s: $(ls "$out")" | tee -a "$log"
