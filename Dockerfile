# The operator image the Helm chart runs (charts/agentmedic, image.repository).
#   docker build -t ghcr.io/agentmedic/agentmedic:0.1.0 .
# It runs as a non-root user with a read-only root filesystem: the chart mounts an emptyDir
# at /tmp and sets PYTHONDONTWRITEBYTECODE.

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir --upgrade pip \
 && pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
# 65532: the chart's runAsUser; no home, no shell needed.
USER 65532:65532
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
EXPOSE 8080 8081
ENTRYPOINT ["agentmedic"]
CMD ["run"]
