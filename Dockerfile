# CPU image that builds and runs the ChannelHub demo:
#   docker build -t channelhub .
#   docker run -p 8501:8501 -p 8000:8000 channelhub
# GPU image (TensorFlow with CUDA; run with `--gpus all`):
#   docker build --build-arg TF_PACKAGE="tensorflow[and-cuda]==2.21.0" -t channelhub:gpu .
# One process per container on a shared PostgreSQL (API, dashboard, workers, controller):
#   docker compose up -d --build   (compose.yaml; the commands there replace this CMD)
FROM python:3.11-slim

ARG TF_PACKAGE=tensorflow-cpu==2.21.0
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    CHANNELHUB_HOME=/data \
    TF_CPP_MIN_LOG_LEVEL=2

WORKDIR /app
COPY requirements.txt ./
# The pinned CPU TensorFlow is swapped for the build argument (the GPU build's CUDA wheels).
RUN grep -v '^tensorflow-cpu==' requirements.txt > /tmp/requirements.txt \
    && pip install --no-cache-dir "${TF_PACKAGE}" -r /tmp/requirements.txt

COPY pyproject.toml README.md alembic.ini ./
COPY core ./core
COPY db ./db
COPY dashboard ./dashboard
RUN pip install --no-cache-dir --no-deps -e .

VOLUME /data
EXPOSE 8000 8501
# Builds the demo on first start (kept in /data), then starts worker, API and dashboard.
CMD ["sh", "-c", "channelhub demo && channelhub up --host 0.0.0.0"]
