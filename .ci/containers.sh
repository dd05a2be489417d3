#!/usr/bin/env bash
# The container path in CI, with no registry: brings up the shared Docker engine, builds a Node 24
# base image from the pinned Node binary, builds deploy/Dockerfile on it, runs NATS, Redis, an SMTP
# sink and the five services as containers on a network of their own, and delivers one message end
# to end; does the same with deploy/compose.yaml (3 smtp-senders; validated first with Debian's
# docker-compose); then runs the end-to-end delivery suite with RELAY_TEST_CONTAINERS=1 (NATS and
# Redis through testcontainers). Everything it started is removed on exit, also on failure or
# Ctrl-C, and the engine is taken down again unless it was running before. About 1.5 minutes.
# (deploy/kubernetes is checked by test/deploy.test.ts in npm test.)
#   RELAY_CI_SKIP_SUITE=1   skip the vitest run (only the image and the delivery through it)
#   RELAY_CI_IMAGE=TAG      test that image (e.g. built from source with deploy/Dockerfile) instead
#                           of building the prebuilt one
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
DOCKER_SCRIPTS=${RELAY_DOCKER_SCRIPTS:-$root/../shared/docker}
IMAGE=${RELAY_CI_IMAGE:-relay-test/relay:ci}
BASE=relay-test/node:24
NODE24=$(readlink -f node_modules/node/bin/node)
run_id=relay-ci-$$
work=$(mktemp -d)
engine_was_up=0
compose_up=0
t0=$SECONDS
step() { echo "containers: [$((SECONDS - t0))s] $*"; }

cleanup() {
  local code=$?
  trap - EXIT INT TERM
  if [ "$code" -ne 0 ] && docker version >/dev/null 2>&1; then
    for c in $(docker ps -aq --filter "label=$run_id" 2>/dev/null); do
      echo "--- last log lines of $(docker inspect --format '{{.Name}}' "$c")"; docker logs --tail 15 "$c" 2>&1 | sed 's/^/  /'
    done
  fi
  docker ps -aq --filter "label=$run_id" 2>/dev/null | xargs -r docker rm -f >/dev/null 2>&1 || true
  [ "$compose_up" = 0 ] || docker-compose -f deploy/compose.yaml down -v --remove-orphans >/dev/null 2>&1 || true
  docker network rm "$run_id" >/dev/null 2>&1 || true
  rm -rf "$work"
  # Leave an engine that was already running (someone else's) as it was.
  [ "$engine_was_up" = 1 ] || bash "$DOCKER_SCRIPTS/docker-down.sh" || true
  step "$([ "$code" -eq 0 ] && echo passed || echo "FAILED ($code)")"
  exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The compose file first: it needs no engine. Debian's docker-compose (1.29), installed if missing.
if ! command -v docker-compose >/dev/null && command -v apt-get >/dev/null; then
  DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -qq --no-install-recommends docker-compose >/dev/null 2>&1 || true
fi
if command -v docker-compose >/dev/null; then
  RELAY_MASTER_KEY=x RELAY_IMAGE=$IMAGE docker-compose -f deploy/compose.yaml config -q
  step "deploy/compose.yaml: docker-compose config ok"
else
  step "docker-compose not installed (apt-get install docker-compose): compose.yaml not checked"
fi

docker version >/dev/null 2>&1 && engine_was_up=1
bash "$DOCKER_SCRIPTS/docker-up.sh" >/dev/null
step "engine up"

# A Node 24 base image from the pinned binary: node, its libraries, a shell and a non-root user.
node_version=$("$NODE24" --version)
if [ "$(docker image inspect --format '{{index .Config.Labels "node.version"}}' "$BASE" 2>/dev/null)" != "$node_version" ]; then
  rootfs=$work/rootfs; mkdir -p "$rootfs"/{bin,tmp,etc}; chmod 1777 "$rootfs/tmp"
  for f in "$NODE24" /bin/dash; do
    cp -L "$f" "$rootfs/bin/$(basename "$f")"
    for lib in $(ldd "$f" | grep -o '/[^ ]*'); do cp -L --parents "$lib" "$rootfs"; done
  done
  ln -s dash "$rootfs/bin/sh"
  printf 'root:x:0:0:root:/:/bin/sh\nnode:x:1000:1000:node:/home/node:/bin/sh\n' >"$rootfs/etc/passwd"
  printf 'root:x:0:\nnode:x:1000:\n' >"$rootfs/etc/group"
  tar -C "$rootfs" -c . | docker import -c 'ENV PATH=/bin' -c "LABEL node.version=$node_version" - "$BASE" >/dev/null
  step "built $BASE from $NODE24"
fi

# The image, from the app packed on the host. The host needs the build too: tools/dist/send.js.
npx turbo run build --output-logs=errors-only >/dev/null
if [ -z "${RELAY_CI_IMAGE:-}" ]; then
  mkdir -p "$work/ctx"
  sh deploy/bundle.sh "$work/ctx/app.tar" --prefer-offline >/dev/null
  cp deploy/Dockerfile "$work/ctx/Dockerfile"
  docker build -q --force-rm --target prebuilt --build-arg NODE_IMAGE="$BASE" -t "$IMAGE" "$work/ctx" >/dev/null
fi
step "image $IMAGE ($(docker image inspect --format '{{.Size}}' "$IMAGE" | awk '{printf "%d MB", $1/1e6}'))"
[ "$(docker image inspect --format '{{.Config.User}}' "$IMAGE")" = 1000:1000 ] || { echo "containers: the image does not run as user 1000" >&2; exit 1; }

# NATS, Redis and an SMTP sink (a few lines of node in the image: it answers 250 and logs each message).
docker network create "$run_id" >/dev/null
drun() { docker run -d --label "$run_id" --network "$run_id" "$@" >/dev/null; }
drun --name "$run_id-nats" --network-alias nats relay-test/nats:2.9 -js -sd /data
drun --name "$run_id-redis" --network-alias redis relay-test/redis:7 --save '' --appendonly no
cat >"$work/sink.mjs" <<'JS'
import { createServer } from 'node:net';
createServer((s) => {
  let data = false, body = '', buf = '';
  const say = (l) => s.write(`${l}\r\n`);
  say('220 sink ESMTP');
  s.setEncoding('utf8').on('data', (chunk) => {
    buf += chunk;
    for (let i; (i = buf.indexOf('\r\n')) >= 0; ) {
      const line = buf.slice(0, i); buf = buf.slice(i + 2);
      if (data) {
        if (line === '.') { data = false; console.log(`received: ${/^Subject: (.*)$/m.exec(body)?.[1]}`); body = ''; say('250 2.0.0 queued'); }
        else body += `${line}\n`;
      } else {
        const verb = line.slice(0, 4).toUpperCase();
        if (verb === 'EHLO' || verb === 'HELO') say('250 sink');
        else if (verb === 'DATA') { data = true; say('354 go ahead'); }
        else if (verb === 'QUIT') { say('221 bye'); s.end(); }
        else say('250 ok');
      }
    }
  });
  s.on('error', () => {});
}).listen(2525, () => console.log('sink listening'));
JS
drun --name "$run_id-sink" --network-alias sink -v "$work/sink.mjs:/app/sink.mjs:ro" --entrypoint node "$IMAGE" /app/sink.mjs

api_key=ci-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
cat >"$work/relay.yaml" <<YAML
clients:
  - { name: ci, api_key: env:CI_API_KEY, senders: [ci] }
senders:
  - { id: ci, from: ci@relay.test, transport: smtp, smtp: { host: sink, port: 2525, security: none } }
YAML
chmod 644 "$work/relay.yaml"
service() { # service NAME [docker run flags...]: one service of the image, waited for until ready
  local name=$1; shift
  # Each service only what it needs (docs/security.md): the master key for credentials, the API
  # key and its own token for ingest, the senders' token for the senders; locked down as compose does.
  local secrets=()
  case $name in
    credentials) secrets=(-e RELAY_MASTER_KEY="$master_key" -e RELAY_INTERNAL_TOKEN="$internal_token" -e RELAY_INTERNAL_ADMIN_TOKEN="$ingest_token") ;;
    ingest) secrets=(-e CI_API_KEY="$api_key" -e RELAY_INTERNAL_TOKEN="$ingest_token") ;;
    smtp-sender | graph-sender) secrets=(-e RELAY_INTERNAL_TOKEN="$internal_token") ;;
  esac
  drun --name "$run_id-$name" --network-alias "$name" "$@" ${secrets[@]+"${secrets[@]}"} \
    --read-only --tmpfs /tmp --cap-drop ALL --security-opt no-new-privileges:true \
    -v "$work/relay.yaml:/etc/relay/relay.yaml:ro" -e NATS_URL=nats://nats:4222 -e REDIS_URL=redis://redis:6379 \
    -e RELAY_CREDENTIALS_ADDR=credentials:50052 -e RELAY_SHUTDOWN_GRACE=5s "$IMAGE" "$name"
}
wait_ready() {
  for name in "$@"; do
    for _ in $(seq 1 150); do
      docker logs "$run_id-$name" 2>&1 | grep -q '"msg":"ready"' && continue 2
      [ "$(docker inspect --format '{{.State.Running}}' "$run_id-$name")" = true ] || break
      sleep 0.2
    done
    echo "containers: $name did not become ready" >&2; return 1
  done
}
master_key=$(head -c 32 /dev/urandom | base64)
internal_token=$(head -c 32 /dev/urandom | base64)
ingest_token=$(head -c 32 /dev/urandom | base64)
# Credentials first: it creates the streams the others use.
service credentials
wait_ready credentials
service ingest -p 127.0.0.1::50051
for name in scheduler smtp-sender graph-sender; do service "$name"; done
wait_ready ingest scheduler smtp-sender graph-sender
step "NATS, Redis, sink and the five services running"

address=$(docker port "$run_id-ingest" 50051/tcp | head -1)
node_modules/.bin/node tools/dist/send.js --address "$address" --api-key="$api_key" --sender ci \
  --to student@campus.test --subject "containers $run_id" --text "through the image" --wait
docker logs "$run_id-sink" 2>&1 | grep -q "received: containers $run_id" || { echo "containers: the sink did not receive the message" >&2; exit 1; }
step "message delivered end to end through the containers"

for _ in $(seq 1 60); do
  [ "$(docker inspect --format '{{.State.Health.Status}}' "$run_id-ingest")" = healthy ] && break; sleep 0.5
done
[ "$(docker inspect --format '{{.State.Health.Status}}' "$run_id-ingest")" = healthy ] || { echo "containers: ingest's health check did not pass" >&2; exit 1; }
docker stop -t 10 "$run_id-smtp-sender" >/dev/null
[ "$(docker inspect --format '{{.State.ExitCode}}' "$run_id-smtp-sender")" = 0 ] || { echo "containers: smtp-sender did not exit 0 on SIGTERM" >&2; exit 1; }
step "health check healthy; SIGTERM stops a service with exit code 0"

# deploy/compose.yaml with the same image: three smtp-senders, a message through them.
if command -v docker-compose >/dev/null; then
  cdir=$work/compose; mkdir -p "$cdir/secrets"
  printf %s "$api_key" >"$cdir/secrets/billing-api-key"; printf %s unused >"$cdir/secrets/noreply-password"
  printf %s "$internal_token" >"$cdir/secrets/internal-token"; printf %s "$ingest_token" >"$cdir/secrets/ingest-token"
  cat >"$cdir/relay.yaml" <<YAML
clients:
  - { name: billing-app, api_key: file:/run/secrets/billing-api-key, senders: [ci] }
senders:
  - { id: ci, from: ci@relay.test, transport: smtp, smtp: { host: sink, port: 2525, security: none } }
YAML
  chmod -R a+rX "$cdir"
  export COMPOSE_PROJECT_NAME=$run_id-compose RELAY_IMAGE=$IMAGE RELAY_NATS_IMAGE=relay-test/nats:2.9 \
    RELAY_REDIS_IMAGE=relay-test/redis:7 RELAY_MASTER_KEY=$master_key RELAY_CONFIG_FILE=$cdir/relay.yaml \
    RELAY_SECRETS_DIR=$cdir/secrets RELAY_GRPC_PUBLISH=127.0.0.1: RELAY_HTTP_PUBLISH=127.0.0.1:
  compose() { docker-compose -f deploy/compose.yaml "$@"; }
  compose_up=1
  # The collector's image cannot be had here: everything else.
  compose up -d --no-build --scale smtp-sender=3 nats redis credentials >/dev/null 2>&1
  docker run -d --label "$run_id" --name "$run_id-compose-sink" --network "${COMPOSE_PROJECT_NAME}_default" --network-alias sink \
    -v "$work/sink.mjs:/app/sink.mjs:ro" --entrypoint node "$IMAGE" /app/sink.mjs >/dev/null
  compose up -d --no-build --scale smtp-sender=3 ingest scheduler smtp-sender graph-sender >/dev/null 2>&1
  for _ in $(seq 1 150); do
    [ "$(compose logs --no-color 2>/dev/null | grep -c '"msg":"ready"')" -ge 7 ] && break; sleep 0.2
  done
  [ "$(compose logs --no-color 2>/dev/null | grep -c '"msg":"ready"')" -ge 7 ] || { compose logs --tail 10; echo "containers: compose services not ready" >&2; exit 1; }
  [ "$(compose ps -q smtp-sender | wc -l)" = 3 ] || { echo "containers: compose did not scale smtp-sender to 3" >&2; exit 1; }
  address=$(compose port ingest 50051)
  node_modules/.bin/node tools/dist/send.js --address "$address" --api-key="$api_key" --sender ci \
    --to student@campus.test --subject "compose $run_id" --wait >/dev/null
  docker logs "$run_id-compose-sink" 2>&1 | grep -q "received: compose $run_id" || { echo "containers: compose: the sink did not receive the message" >&2; exit 1; }
  docker rm -f "$run_id-compose-sink" >/dev/null # on the project's network: before down removes it
  compose down -v --remove-orphans >/dev/null 2>&1
  compose_up=0
  step "deploy/compose.yaml: up with 3 smtp-senders, message delivered, down"
fi

if [ "${RELAY_CI_SKIP_SUITE:-}" != 1 ]; then
  RELAY_TEST_CONTAINERS=1 TESTCONTAINERS_RYUK_DISABLED=true TESTCONTAINERS_HOST_OVERRIDE=127.0.0.1 \
    RELAY_NATS_IMAGE=relay-test/nats:2.9 RELAY_REDIS_IMAGE=relay-test/redis:7 \
    npx vitest run test/delivery.test.ts tools/src/infra.test.ts
  step "delivery suite and the stack's container start passed with NATS and Redis in containers"
fi
