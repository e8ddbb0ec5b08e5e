# The operator image the Helm chart runs (charts/agentmedic, image.repository).
#   docker build -t ghcr.io/agentmedic/agentmedic:0.1.0 .
# It runs as a non-root user with a read-only root filesystem: the chart mounts an emptyDir
# at /tmp and sets PYTHONDONTWRITEBYTECODE.
# Only src/agentmedic is copied: the sandbox (src/agentmedic_sandbox: the API emulator, the
# local control plane, the simulated fleet) is for the demo and the tests and stays out of
# the image; `agentmedic demo` there says so in one line. The openai extra is in: the
# chart's prompt-optimization Jobs run `agentmedic optimize-prompt` with this image.

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src/agentmedic ./src/agentmedic
RUN pip install --no-cache-dir --upgrade pip \
 && pip wheel --no-cache-dir --wheel-dir /wheels '.[openai]'

FROM python:3.11-slim
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
# 65532: the chart's runAsUser; no home, no shell needed.
USER 65532:65532
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
EXPOSE 8080 8081
ENTRYPOINT ["agentmedic"]
CMD ["run"]
