# STAND-IN for the Docker Hub images stratumv2/pool_sv2:v0.2.0 and stratumv2/translator_sv2:v0.2.0,
# which cannot be pulled here: the pool_sv2 or translator_sv2 binary the e2e built from its crate
# (tests/e2e/tools.sh sv2), in the upstream images' layout, user and entrypoint. Upstream builds
# sv2-apps' docker/Dockerfile with APP set to the app: a Debian bookworm-slim runtime, WORKDIR
# /app, ENV APP, the binary at /app/${APP}, no USER (root), and an entrypoint that runs it through
# /bin/sh, ignoring container args (docs/upstream-behaviour.md, "The sv2-apps images ignore
# container args and run as root"). Unlike upstream, the base is the e2e's stand-in for
# debian:bookworm-slim and gettext-base (envsubst, for upstream's compose templates) is absent.
# Build context: a folder holding this file and the binary named APP (tests/e2e/images/builds.py).
ARG BASE_IMAGE
FROM ${BASE_IMAGE}

ARG APP
WORKDIR /app
ENV APP=${APP}
COPY ${APP} /app/${APP}
LABEL org.opencontainers.image.description="e2e stand-in for stratumv2/${APP}:v0.2.0, built from the ${APP} crate"

# Upstream's: the app through /bin/sh, container args ignored (the program sets `command`).
ENTRYPOINT ["/bin/sh", "-c", "/app/${APP}"]
