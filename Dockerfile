# The training image for Vertex AI custom jobs (`gemma-panel cloud submit`), one per
# accelerator family; the tag is the project's version, which the job spec pins:
#
#   VERSION=$(python -c "import gemma_panel; print(gemma_panel.__version__)")
#   docker build --build-arg FLAVOR=tpu  -t "$REPO/gemma-panel:$VERSION-tpu"  .
#   docker build --build-arg FLAVOR=cuda -t "$REPO/gemma-panel:$VERSION-cuda" .
#   docker push "$REPO/gemma-panel:$VERSION-tpu"
#
# REPO is your Artifact Registry repository path (docs/cloud.md, "The training image").
# FLAVOR picks the JAX build: the pyproject extra "tpu" (jax[tpu], libtpu) or "cuda"
# (jax[cuda12]); the "cloud" extra adds the Cloud Storage and Vertex AI libraries.
ARG PYTHON_VERSION=3.11
FROM python:${PYTHON_VERSION}-slim

ARG FLAVOR=tpu
ENV PYTHONUNBUFFERED=1 \
    KERAS_BACKEND=jax \
    TF_CPP_MIN_LOG_LEVEL=3 \
    GEMMA_PANEL_HOME=/var/lib/gemma_panel

WORKDIR /opt/gemma-panel
COPY pyproject.toml README.md ./
COPY gemma_panel ./gemma_panel
COPY recipes ./recipes
COPY examples ./examples
RUN pip install --no-cache-dir ".[cloud,${FLAVOR}]" \
    && gemma-panel --help > /dev/null

# Vertex AI gives the command (gemma-panel run /gcs/BUCKET/.../recipe.yaml).
CMD ["gemma-panel", "--help"]
