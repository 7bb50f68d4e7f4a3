# ami-guard sidecar. Build stage compiles TypeScript with the dev dependencies; the runtime stage has production
# dependencies only, plus nftables and python3 (the persistent nft writer: a small helper on libnftables). It runs
# as root only because nft needs CAP_NET_ADMIN: run it with
# network_mode: host and cap_add: [NET_ADMIN], nothing more.
#
# Node 26, the Active LTS line since October 2026 (Node 20 reached its end of life in April 2026), on Debian 13
# (trixie, the current stable). package.json's engines still accepts Node >= 20, where the tests run.
FROM node:26-trixie-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY scripts/copy-assets.mjs ./scripts/
COPY src ./src
RUN npx tsc -p tsconfig.build.json && node scripts/copy-assets.mjs

FROM node:26-trixie-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends nftables python3 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist/src ./dist/src
COPY config/example.json ./config/example.json
# store.stateDir: the embedded store's bans, history and trust, and the identity of the Redis last seen; a volume
# (docker-compose.yml), since the root filesystem is read-only and a restart must not forget them
RUN mkdir -m 0700 /var/lib/ami-guard
VOLUME ["/var/lib/ami-guard"]
# /metrics and /healthz (http.port; with network_mode: host this is a port of the host)
EXPOSE 9538
# healthy = AMI logged in, store answering, nft table in place. No curl in the slim image: node's own fetch. The
# probe asks loopback, so http.host must be 127.0.0.1 (the default) or 0.0.0.0; http.port 0 turns /healthz off.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.AMI_GUARD_HTTP_PORT||9538)+'/healthz',{signal:AbortSignal.timeout(4000)}).then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# the daemon's heap limits (src/cli/node-flags.ts says why)
ENTRYPOINT ["node", "--max-old-space-size=256", "--max-semi-space-size=8", "/app/dist/src/cli/main.js"]
CMD ["run"]
