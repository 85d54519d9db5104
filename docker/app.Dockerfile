# syntax=docker/dockerfile:1.7
# One image per DMP app, from the repository root:
#   docker build -f docker/app.Dockerfile --build-arg APP=dmp-kernel -t dmp/dmp-kernel .
# APP: dmp-mqtt | dmp-kernel | dmp-data (apps/<APP>), or simulator (tools/simulator).

ARG NODE_IMAGE=node:26-trixie-slim

# ── build: compile the monorepo once, then keep only production dependencies ────────────────────
FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN --mount=type=cache,target=/root/.npm npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json nest-cli.json ./
# npm scripts run through scripts/with-env.sh (the project's toolchain; here the image's Node).
COPY scripts/env.sh scripts/with-env.sh scripts/bootstrap.sh ./scripts/
COPY libs ./libs
COPY apps ./apps
COPY tools ./tools
RUN npm run build \
 && npm prune --omit=dev --no-audit --no-fund

ARG APP
RUN test -n "${APP}" || { echo 'build arg APP is required (dmp-mqtt | dmp-kernel | dmp-data | simulator)' >&2; exit 1; } \
 && if [ -f "dist/apps/${APP}/src/main.js" ]; then main="dist/apps/${APP}/src/main.js"; \
    elif [ -f "dist/tools/${APP}/src/main.js" ]; then main="dist/tools/${APP}/src/main.js"; \
    else echo "no entry point for ${APP} in dist/" >&2; exit 1; fi \
 && printf '%s' "${main}" > /src/main-path

# ── runtime: Node + compiled JS + production node_modules, as the unprivileged `node` user (1000) ─
FROM ${NODE_IMAGE} AS runtime
ARG APP
ENV NODE_ENV=production \
    DMP_APP=${APP} \
    HTTP_HOST=0.0.0.0
WORKDIR /app
COPY --from=build --chown=1000:1000 /src/package.json ./package.json
COPY --from=build --chown=1000:1000 /src/node_modules ./node_modules
COPY --from=build --chown=1000:1000 /src/dist ./dist
COPY --from=build /src/main-path /app/main-path
# dmp-kernel's default rule set (KERNEL_RULES_DIR, relative to /app). A named volume mounted here
# starts as a copy of it, and keeps what the admin API writes across restarts.
COPY --chown=1000:1000 rules ./rules
RUN ln -s "$(cat /app/main-path)" /app/main.js
USER 1000:1000
# GET /health: 200 when every dependency the app registered is up (apps with HTTP_PORT only).
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=6 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + process.env.HTTP_PORT + '/health').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# Node handles SIGTERM itself (Nest shutdown hooks drain in-flight work); run with `init: true`
# (compose) or an init process so signals and zombies are handled when Node is PID 1.
ENTRYPOINT ["node", "--enable-source-maps", "/app/main.js"]
