# The S3 test server of the local facility: moto's standalone server with IAM authentication on.
# Test-only; built by images/facility/image_build.py FROM the same Debian base as the project image.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}
ARG MOTO="moto[server]"
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 PATH=/opt/moto/bin:$PATH
RUN python3 -m venv /opt/moto && pip install "${MOTO}"
COPY s3_server.py /opt/moto/s3_server.py
USER 1000:1000
EXPOSE 5000
ENTRYPOINT ["python3", "/opt/moto/s3_server.py"]
