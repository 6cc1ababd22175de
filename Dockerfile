# CPU container for bertprune. It installs requirements.lock with `make install`, the same
# command that developers and CI run, and runs `make all` on experiments/default.yaml by default.
#
#   docker build -t bertprune .
#   docker build --build-arg PREFETCH_PAPER=1 -t bertprune:paper .
#   docker run --rm -v "$PWD/results:/app/results" bertprune
#
# PREFETCH_PAPER=1 also downloads the checkpoints and datasets of experiments/paper/ into the
# image's Hugging Face cache, so that paper experiments can later run with HF_HUB_OFFLINE=1.
# There is no GPU variant: the image installs the CPU build of PyTorch.

# python:3.11.7-slim-bookworm: the same CPython release as the development machines, so the
# virtual environment of `make install` starts with the same bundled pip (23.2.1) there and here.
# NOTE: the digest is copied from a public Dockerfile that pins this tag
# (nalabelle/build, images/digests.Dockerfile). No machine of this project has pulled it.
FROM python:3.11.7-slim-bookworm@sha256:8f64a67710f3d981cf3008d6f9f1dbe61accd7927f165f4e37ea3f8b883ccc3f

# requirements.lock pins torch==2.13.0. That pin also matches 2.13.0+cpu from the PyTorch CPU
# index, and pip prefers 2.13.0+cpu because a local version label sorts higher. PyPI's 2.13.0
# Linux wheel would pull in the CUDA libraries, which the lock does not list.
# The variables stay set at run time, so a rerun of `make install` resolves the same way.
ENV PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    HF_HOME=/app/.cache/huggingface \
    VENV=/app/.venv

# make runs the pipeline, and git lets each result record the commit it came from.
# The safe.directory entry keeps that record working under `docker run --user UID:GID`,
# when /app belongs to another user than the one running git.
# The Debian versions of git and make are not pinned (hadolint DL3008): Debian mirrors drop
# superseded versions, so such a pin breaks the build after the next point release, and neither
# tool takes part in a measured computation.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends git make \
    && rm -rf /var/lib/apt/lists/* \
    && git config --system --add safe.directory /app \
    && useradd --create-home --uid 1000 --user-group bertprune \
    && mkdir -p /app/results /app/.cache/huggingface \
    && chown -R bertprune:bertprune /app

WORKDIR /app
# The numeric form of the bertprune user created above, which any host can resolve.
USER 1000:1000

# The whole checkout, .git included, so that results record the commit; .dockerignore keeps out
# the local virtual environment, results and caches.
COPY --chown=bertprune:bertprune . .

# The check after `make install` stops the build if the CUDA build of torch was installed.
RUN make install \
    && "$VENV/bin/python" -c "import torch; assert torch.version.cuda is None, torch.__version__"

ARG PREFETCH_PAPER=0
RUN case "$PREFETCH_PAPER" in \
        0) ;; \
        1) "$VENV/bin/python" scripts/prefetch_paper_assets.py ;; \
        *) echo "PREFETCH_PAPER must be 0 or 1, not '$PREFETCH_PAPER'" >&2; exit 1 ;; \
    esac

VOLUME ["/app/results"]
CMD ["make", "all"]
