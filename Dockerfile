# tsf-adapter container image: the forecasting daemon, models kept on a volume.
#
#   docker build -t tsf-adapter .
#   docker run -p 9201:9201 -v tsf-models:/var/lib/tsf-adapter tsf-adapter
#   docker run ... -v $PWD/my.yaml:/etc/tsf-adapter/config.yaml tsf-adapter      # your own config
#   docker run ... -e TSF_ADAPTER_LISTEN_ADDRESS=:9301 -p 9301:9301 tsf-adapter    # another port
#
# The built-in config (deploy/container/config.yaml) expects Prometheus at http://prometheus:9090.
#
# torch is installed first, pinned, from the wheel index TORCH_INDEX_URL names; the build chooses
# the image's compute path:
#   docker build -t tsf-adapter .                                  # PyTorch's CPU build (default)
#   docker build --build-arg TORCH_INDEX_URL= -t tsf-adapter:cuda .  # PyPI's build: CUDA on x86-64
#   docker build --build-arg TORCH_INDEX_URL=<a PyTorch CUDA wheel index> -t tsf-adapter:cuda .
# A CUDA image trains on the GPU by itself when the container has one (docker run --gpus all ...,
# or a Kubernetes nvidia.com/gpu limit): the training device is "auto" (CUDA when present).
FROM python:3.11-slim

ARG TORCH_INDEX_URL="https://download.pytorch.org/whl/cpu"
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/tsf-adapter
RUN if [ -n "$TORCH_INDEX_URL" ]; then \
        pip install --index-url "$TORCH_INDEX_URL" torch==2.13.0; \
    else \
        pip install torch==2.13.0; \
    fi
COPY pyproject.toml README.md ./
COPY tsf_adapter ./tsf_adapter
RUN pip install . && mkdir -p /etc/tsf-adapter /var/lib/tsf-adapter \
    && chown 65534:65534 /var/lib/tsf-adapter
COPY deploy/container/config.yaml /etc/tsf-adapter/config.yaml

# Read by `tsf-adapter run` and `tsf-adapter healthcheck` when no flag says otherwise.
ENV TSF_ADAPTER_CONFIG=/etc/tsf-adapter/config.yaml
VOLUME ["/var/lib/tsf-adapter"]
USER 65534:65534
EXPOSE 9201
# Probes /-/healthy wherever the daemon listens (the flag, the environment, or the config).
HEALTHCHECK --interval=30s --timeout=5s CMD ["tsf-adapter", "healthcheck"]
ENTRYPOINT ["tsf-adapter"]
CMD ["run"]
