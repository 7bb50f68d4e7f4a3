# ami-guard sidecar. Build stage compiles TypeScript with the dev dependencies; the runtime stage has production
# dependencies only, plus nftables. It runs as root only because nft needs CAP_NET_ADMIN: run it with
# network_mode: host and cap_add: [NET_ADMIN], nothing more.
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY scripts/copy-assets.mjs ./scripts/
COPY src ./src
RUN npx tsc -p tsconfig.build.json && node scripts/copy-assets.mjs

FROM node:20-bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends nftables \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist/src ./dist/src
COPY config/example.json ./config/example.json
ENTRYPOINT ["node", "/app/dist/src/cli/main.js"]
CMD ["run"]
