#!/usr/bin/env bash
# One install path for every machine: a DGX Spark (GB10, aarch64, CUDA 13), an x86_64 NVIDIA host,
# a CPU-only laptop or CI, and the Docker image (which calls this script with --system-torch).
#
#   ./setup.sh                 detect the platform and install into .venv
#   ./setup.sh --cpu           CPU torch, no unsloth/bitsandbytes/xformers (tests, laptops, CI)
#   ./setup.sh --gpu           insist on the GPU stack (fails clearly without a CUDA driver)
#   ./setup.sh --system-torch  reuse the interpreter's torch (NGC image); never replace it
#   ./setup.sh --no-kernel     do not install the Jupyter kernel (into the venv)
#
# Environment: PYTHON (interpreter to build the venv from), TORCH_VERSION (default 2.13.0),
# TORCH_INDEX (a PyTorch wheel index; default chosen per platform), VENV (default .venv).
# A second run with nothing changed is a no-op that takes a second or two.
set -euo pipefail
cd "$(dirname "$0")"

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
die() { printf '\033[31m[setup] error:\033[0m %s\n' "$*" >&2; exit 1; }

mode=auto system_torch=0 kernel=1
for arg in "$@"; do
  case "$arg" in
    --cpu) mode=cpu ;;
    --gpu) mode=gpu ;;
    --system-torch) system_torch=1 ;;
    --no-kernel) kernel=0 ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option '$arg' (see ./setup.sh --help)" ;;
  esac
done

VENV=${VENV:-.venv}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
export UV_PYTHON_DOWNLOADS=never UV_LINK_MODE=${UV_LINK_MODE:-copy}

# --- the interpreter ------------------------------------------------------------------------------
py=${PYTHON:-}
if [ -z "$py" ]; then
  for cand in python3.12 python3.11 python3 python; do
    # pyenv shims exist for versions that are not active: only an interpreter that runs counts
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      py=$("$cand" -c 'import sys; print(sys.executable)'); break
    fi
  done
fi
[ -n "$py" ] || die "no Python found. Install Python 3.11 or newer (or set PYTHON=/path/to/python3)."
pyver=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
"$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || die "$py is Python $pyver; this project needs Python >= 3.11 (set PYTHON=/path/to/python3.11)."

# --- uv -------------------------------------------------------------------------------------------
uv_tool_venv=${XDG_CACHE_HOME:-$HOME/.cache}/gpt-oss-2048/uv
[ -x "$uv_tool_venv/bin/uv" ] && export PATH="$uv_tool_venv/bin:$PATH"
if ! command -v uv >/dev/null 2>&1; then
  say "uv not found: installing it with pip"
  if "$py" -m pip install --quiet --user uv 2>/dev/null; then
    export PATH="$("$py" -m site --user-base)/bin:$PATH"
  else
    # An "externally managed" system Python refuses --user installs: give uv a small venv of its own.
    say "pip refused a user install; installing uv into $uv_tool_venv"
    "$py" -m venv "$uv_tool_venv" && "$uv_tool_venv/bin/python" -m pip install --quiet uv \
      || die "could not install uv (is python3-venv installed?); install it yourself: pipx install uv, or see https://docs.astral.sh/uv/"
    export PATH="$uv_tool_venv/bin:$PATH"
  fi
  command -v uv >/dev/null 2>&1 || die "uv was installed but is not on PATH; install it yourself: pip install uv"
fi

# --- the platform ---------------------------------------------------------------------------------
arch=$(uname -m)
gpu_name=""
if command -v nvidia-smi >/dev/null 2>&1; then
  gpu_name=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n1 || true)
fi
if [ "$mode" = auto ]; then
  if [ -n "$gpu_name" ]; then mode=gpu; else mode=cpu; fi
fi
if [ "$mode" = gpu ] && [ -z "$gpu_name" ]; then
  if [ "$system_torch" = 1 ] && "$py" -c 'import sys, torch; sys.exit(torch.version.cuda is None)' 2>/dev/null; then
    # `docker build` sees no GPU; the image's CUDA torch is what the container will use at run time.
    say "no CUDA driver visible now (a docker build?): installing the GPU stack for the interpreter's CUDA torch"
  else
    die "--gpu asked for, but no CUDA driver answers (nvidia-smi missing or failing). Install the NVIDIA driver, or run ./setup.sh --cpu for the CPU-only set."
  fi
fi
blackwell=0
if [ "$mode" = gpu ] && { [ "$arch" = aarch64 ] || [[ "$gpu_name" == *GB10* ]]; }; then blackwell=1; fi
case "$mode" in
  cpu) say "platform: $arch, no GPU in use -> CPU torch, no unsloth/bitsandbytes/xformers" ;;
  gpu) say "platform: $arch, GPU '$gpu_name' -> CUDA torch and the Unsloth stack$([ $blackwell = 1 ] && echo ' (GB10/Blackwell workarounds on)')" ;;
esac
lock=requirements/$mode.lock
[ -f "$lock" ] || die "$lock is missing; this checkout is incomplete"

# --- idempotence: the same inputs as last time mean nothing to do --------------------------------
stamp_file="$VENV/.setup-stamp"
stamp=$(cat "$lock" pyproject.toml "$0" | sha256sum | cut -c1-16)-$mode-$system_torch-$kernel-$TORCH_VERSION-$pyver
# The kernel lives in the venv and names the venv's interpreter by its absolute path: a moved clone redoes it.
kernel_ok() {
  [ "$kernel" = 0 ] || grep -qF "\"$(cd "$VENV" 2>/dev/null && pwd -P)/bin/python\"" \
    "$VENV/share/jupyter/kernels/gpt-oss-2048/kernel.json" 2>/dev/null
}
if [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$stamp" ] && kernel_ok && "$VENV/bin/python" -c 'import helpers' 2>/dev/null; then
  say "already set up ($VENV matches $lock); nothing to do"
  exit 0
fi

# --- the virtual environment ----------------------------------------------------------------------
venv_args=(--python "$py" --seed)
[ "$system_torch" = 1 ] && venv_args+=(--system-site-packages)
if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV with Python $pyver"
  uv venv --quiet "${venv_args[@]}" "$VENV"
fi
vpy="$VENV/bin/python"
uvpip() { uv pip "$@" --python "$vpy"; }

# --- torch: the only package whose build differs between machines --------------------------------
if [ "$system_torch" = 1 ]; then
  tv=$("$vpy" -c 'import torch; print(torch.__version__)' 2>/dev/null) \
    || die "--system-torch: the interpreter $py has no importable torch"
  say "keeping the interpreter's torch $tv (it is never replaced)"
elif "$vpy" -c "import torch, sys; sys.exit(not torch.__version__.startswith('$TORCH_VERSION'))" 2>/dev/null; then
  say "torch $TORCH_VERSION already installed"
elif [ "$mode" = cpu ]; then
  # A local wheel folder that pip is configured with (find-links) wins; otherwise the PyTorch CPU index.
  wheel=""
  links="${PIP_FIND_LINKS:-$("$py" -m pip config get global.find-links 2>/dev/null || true)}"
  cp=cp${pyver/./}
  for dir in $links; do
    dir=${dir#file://}
    for w in "$dir"/torch-"$TORCH_VERSION"*cpu*-"$cp"-*.whl "$dir"/torch-"$TORCH_VERSION"-"$cp"-*.whl; do
      [ -f "$w" ] && wheel=$w && break 2
    done
  done
  if [ -n "$wheel" ]; then
    say "installing CPU torch from the local wheel $wheel"
    uvpip install --quiet "$wheel"
  else
    idx=${TORCH_INDEX:-https://download.pytorch.org/whl/cpu}
    say "installing CPU torch $TORCH_VERSION from $idx"
    uvpip install --quiet "torch==$TORCH_VERSION" --index-url "$idx" --extra-index-url https://pypi.org/simple \
      || die "could not install CPU torch $TORCH_VERSION from $idx (set TORCH_INDEX, or put a wheel in pip's find-links)"
  fi
else
  idx=${TORCH_INDEX:-https://download.pytorch.org/whl/cu130}
  say "installing CUDA 13.0 torch $TORCH_VERSION and torchvision from $idx"
  uvpip install --quiet "torch==$TORCH_VERSION" torchvision --index-url "$idx" --extra-index-url https://pypi.org/simple \
    || die "could not install CUDA torch from $idx (set TORCH_INDEX or TORCH_VERSION)"
fi

# --- everything else: one pinned set, the same on every machine ----------------------------------
say "installing the pinned set from $lock"
uvpip install --quiet --no-deps -r "$lock"
uvpip install --quiet --no-deps -e .
"$vpy" -c 'import helpers' || die "the helpers package does not import after installation"

# --- GB10 / Blackwell: Triton must use the CUDA 13 ptxas, and kernels target sm_121a -------------
blackwell_env=(TRITON_PTXAS_PATH=/usr/local/cuda/bin/ptxas TRITON_PTXAS_BLACKWELL_PATH=/usr/local/cuda/bin/ptxas
               TORCH_CUDA_ARCH_LIST=12.1a)
site=$("$vpy" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
if [ "$blackwell" = 1 ]; then
  # A .pth file runs at every interpreter start in the venv: scripts, `python -m helpers` and kernels.
  {
    printf 'import os; '
    for kv in "${blackwell_env[@]}"; do printf 'os.environ.setdefault("%s", "%s"); ' "${kv%%=*}" "${kv#*=}"; done
    printf '\n'
  } > "$site/gpt_oss_2048_blackwell.pth"
  if ! grep -q 'gpt-oss-2048 Blackwell' "$VENV/bin/activate"; then
    { echo '# gpt-oss-2048 Blackwell workarounds'; for kv in "${blackwell_env[@]}"; do echo "export $kv"; done; } >> "$VENV/bin/activate"
  fi
  say "Blackwell workarounds written to $VENV/bin/activate and $site/gpt_oss_2048_blackwell.pth"
else
  rm -f "$site/gpt_oss_2048_blackwell.pth"
fi

# --- the Jupyter kernel ---------------------------------------------------------------------------
# Installed into the venv, not user-wide, so that each clone's notebooks run that clone's venv and code;
# a user-wide gpt-oss-2048 from older set-ups is removed if it ran this venv or a venv that is gone.
if [ "$kernel" = 1 ]; then
  env_args=()
  if [ "$blackwell" = 1 ]; then for kv in "${blackwell_env[@]}"; do env_args+=(--env "$kv"); done; fi
  "$vpy" -m helpers.kernel "${env_args[@]}" | while IFS= read -r line; do say "$line"; done
fi

# --- git hooks: keep notebook mirrors in sync and outputs stripped -------------------------------
if [ -d .git ] && [ -x "$VENV/bin/pre-commit" ] && [ -f .pre-commit-config.yaml ]; then
  "$VENV/bin/pre-commit" install >/dev/null 2>&1 || say "note: pre-commit hooks not installed (offline?)"
fi

echo "$stamp" > "$stamp_file"
say "done: $(du -sh "$VENV" | cut -f1) in $VENV. Next: $VENV/bin/python -m helpers train   or   $VENV/bin/jupyter lab"
