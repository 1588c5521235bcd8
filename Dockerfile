# One image for both entry points. CMD runs the sidecar; the operator is the same image with
# args `node operator/src/main.ts` (the Helm chart sets them). There is no build step for our
# code: Node 24 runs the TypeScript directly (type stripping).
#
#   docker build -t gitmirror:0.1.0 .

# Both stages use the same base, so the addon compiled in the first runs on the same Node and
# glibc in the second. Keep the major equal to package.json's engines (a test checks).
ARG NODE_IMAGE=node:24-slim

FROM ${NODE_IMAGE} AS build
# zstd-napi compiles a native addon with node-gyp on install.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
# Compile zstd-napi here rather than download a prebuilt binary, against the headers this
# image ships in /usr/local (the repository's .npmrc points at Debian's /usr for development).
ENV npm_config_nodedir=/usr/local \
    npm_config_build_from_source=zstd-napi
# Production dependencies only: the dev dependencies (node@24 itself, TypeScript, biome, test
# libraries) are for development; the base image provides Node.
# Registry access for this step only, when the builder passes it (`npm run image` does): a CA
# bundle that trusts the registry (e.g. behind a TLS-inspecting proxy) and the builder's npmrc.
# Secret mounts are never written into a layer; without them the public registry is used.
RUN --mount=type=secret,id=npm-ca --mount=type=secret,id=npmrc \
    if [ -s /run/secrets/npm-ca ]; then export NODE_EXTRA_CA_CERTS=/run/secrets/npm-ca; fi \
 && if [ -s /run/secrets/npmrc ]; then export npm_config_userconfig=/run/secrets/npmrc; fi \
 && npm ci --omit=dev --no-audit --no-fund \
 && node -e "require('zstd-napi')" \
 && npm cache clean --force

FROM ${NODE_IMAGE}
# git serves and fetches mirrors, zstd restores snapshots by hand; ca-certificates because git
# (unlike Node) reads the system trust store, and --no-install-recommends would leave it out;
# tini is PID 1 (see the ENTRYPOINT).
RUN apt-get update \
 && apt-get install -y --no-install-recommends git zstd ca-certificates tini \
 && rm -rf /var/lib/apt/lists/*
# A numeric non-root user, so Kubernetes can check runAsNonRoot without reading /etc/passwd;
# the chart runs as the same ids.
RUN groupadd --gid 10001 gitmirror \
 && useradd --uid 10001 --gid 10001 --home-dir /home/gitmirror --create-home --shell /usr/sbin/nologin gitmirror \
 && mkdir /data \
 && chown 10001:10001 /data
WORKDIR /app
ENV NODE_ENV=production \
    GITMIRROR_DATA_DIR=/data
COPY --from=build /app/node_modules ./node_modules
COPY package.json ./
COPY crds ./crds
COPY core ./core
COPY github ./github
COPY operator ./operator
COPY sidecar ./sidecar
COPY scripts/warm-compile-cache.ts ./scripts/
# V8 code for every module both entry points load, compiled at build time, so a new pod does
# not compile them again: the sidecar starts in ~0.25 s instead of ~0.45 s, on the way to its
# readiness gate. Node keys the cache by uid, so it is filled as the user that runs; at run
# time the directory is only read (the chart's root filesystem is read-only).
ENV NODE_COMPILE_CACHE=/app/.node-compile-cache
RUN mkdir "$NODE_COMPILE_CACHE" && chown 10001:10001 "$NODE_COMPILE_CACHE"
USER 10001:10001
RUN node scripts/warm-compile-cache.ts
# git over HTTP, /healthz, /readyz | admin API and /metrics (the operator uses 8081).
EXPOSE 8080 9090
# A container's first process must reap orphans, and Node does not: git dies without waiting
# for its remote helper when upstream fails (refused, 404, 429), and each such fetch left a
# `git remote-http` zombie for good (found by the soak, e2e/soak). tini reaps them and passes
# signals on to Node. The chart's `args` replace only the CMD. The flag keeps V8's young
# generation at 1 MiB (README, Performance: memory).
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["node", "--max-semi-space-size=1", "sidecar/src/main.ts"]
