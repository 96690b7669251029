# syntax=docker/dockerfile:1
# spaceone-job: the cost-analysis Job and JobTask APIs. Configure with SPACEONE_JOB_* variables.

# Build: wheels of the service and its runtime dependencies only (no test or lint tools).
FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY spaceone_job ./spaceone_job
COPY generated ./generated
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# Run: a non-root user, no compiler, no pip cache; the root filesystem can be read-only.
FROM python:3.12-slim
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin spaceone
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index /wheels/*.whl && rm -rf /wheels
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SPACEONE_JOB_HOST=0.0.0.0 \
    SPACEONE_JOB_PORT=50051 \
    SPACEONE_JOB_METRICS_PORT=9090 \
    SPACEONE_JOB_LOG_FORMAT=json \
    SPACEONE_JOB_STATE_DIR=/tmp/spaceone-job
USER 10001
EXPOSE 50051 8080 9090
HEALTHCHECK --interval=10s --timeout=5s --start-period=15s --retries=3 \
  CMD ["spaceone-job", "health"]
ENTRYPOINT ["spaceone-job"]
CMD ["serve"]
