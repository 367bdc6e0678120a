# tsf-adapter container image.
#
#   docker build -t tsf-adapter .
#   docker run -p 9201:9201 -v $PWD/config.yaml:/etc/tsf-adapter/config.yaml tsf-adapter
#
# torch is installed first and pinned. By default pip takes it from PyPI (a large CUDA build on
# x86-64); pass --build-arg TORCH_INDEX_URL=<your PyTorch CPU wheel index> for a small CPU image.
FROM python:3.11-slim

ARG TORCH_INDEX_URL=""
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
COPY config.yaml /etc/tsf-adapter/config.yaml

USER 65534:65534
EXPOSE 9201
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request,sys; \
urllib.request.urlopen('http://127.0.0.1:9201/-/healthy', timeout=2)" || exit 1
ENTRYPOINT ["tsf-adapter"]
CMD ["receive", "--config", "/etc/tsf-adapter/config.yaml"]
