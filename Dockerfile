# gpt-oss-20b learns 2048 with GRPO: a JupyterLab image for a DGX Spark (GB10, arm64) or an x86_64 H100/H200.
#
# Base: NVIDIA's PyTorch NGC image with CUDA 13 (25.11 or newer; 25.09 did not see the GB10). Its torch is
# built for the GPU and is never replaced: setup.sh --system-torch installs everything else beside it,
# through the same script and the same pinned lock as a bare-metal install.
#
#   docker build -t gpt-oss-2048 .
#   docker run --gpus=all --ipc=host --ulimit memlock=-1 --ulimit stack=67108864 -p 8888:8888 \
#     -v "$HOME/.cache/huggingface:/root/.cache/huggingface" -v "$PWD/outputs:/workspace/gpt-oss-2048/outputs" gpt-oss-2048
ARG BASE_IMAGE=nvcr.io/nvidia/pytorch:25.11-py3
FROM ${BASE_IMAGE}

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    UV_LINK_MODE=copy \
    HF_HOME=/root/.cache/huggingface

RUN python -m pip install --no-cache-dir uv

WORKDIR /workspace/gpt-oss-2048
# The install inputs first, so a code change does not re-run the install layer.
COPY pyproject.toml setup.sh README.md ./
COPY requirements/ requirements/
# setup.sh imports helpers and installs the kernel (helpers.kernel, which checks the clone with helpers.checkout)
COPY helpers/__init__.py helpers/checkout.py helpers/kernel.py helpers/
RUN ./setup.sh --gpu --system-torch && rm -rf /root/.cache/uv

COPY . .

EXPOSE 8888
CMD [".venv/bin/jupyter", "lab", "--ip=0.0.0.0", "--port=8888", "--no-browser", "--allow-root", \
     "--ServerApp.root_dir=/workspace/gpt-oss-2048"]
