#!/usr/bin/env bash
# The container path in CI, with no registry: brings up the shared Docker engine, builds a Node 24
# base image from the pinned Node binary, builds deploy/Dockerfile on it, runs NATS, Redis, an SMTP
# sink and the five services as containers on a network of their own, and delivers one message end
# to end; does the same with deploy/compose.yaml (3 smtp-senders; validated first with Debian's
# docker-compose); then runs the end-to-end delivery suite with RELAY_TEST_CONTAINERS=1 (NATS and
# Redis through testcontainers). Everything it started is removed on exit, also on failure or
# Ctrl-C, and the engine is taken down again unless it was running before.
# (deploy/kubernetes is checked by test/deploy.test.ts in npm test.)
#   RELAY_CI_SKIP_SUITE=1   skip the vitest run (only the image and the delivery through it)
#   RELAY_CI_IMAGE=TAG      test that image (e.g. built from source with deploy/Dockerfile) instead
#                           of building the prebuilt one
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
DOCKER_SCRIPTS=${RELAY_DOCKER_SCRIPTS:-$root/../shared/docker}
# A tag of this run's own: two runs on one engine must not test each other's build.
IMAGE=${RELAY_CI_IMAGE:-relay-test/relay:ci-$$}
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
  docker network rm "$run_id" "$run_id-cluster" >/dev/null 2>&1 || true
  [ -n "${RELAY_CI_IMAGE:-}" ] || docker rmi "$IMAGE" >/dev/null 2>&1 || true
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

# The image, from the app packed on the host. The host needs the build too: the relay command (cli/dist/main.js).
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
    ingest) secrets=(-e CI_API_KEY="$api_key" -e RELAY_INTERNAL_TOKEN="$ingest_token" -e RELAY_ENVELOPE_KEY="$envelope_key") ;;
    smtp-sender | graph-sender) secrets=(-e RELAY_INTERNAL_TOKEN="$internal_token" -e RELAY_ENVELOPE_KEY="$envelope_key") ;;
  esac
  drun --name "$run_id-$name" --network-alias "$name" "$@" ${secrets[@]+"${secrets[@]}"} \
    --read-only --tmpfs /tmp --cap-drop ALL --security-opt no-new-privileges:true \
    -v "$work/relay.yaml:/etc/relay/relay.yaml:ro" -e NATS_URL=nats://nats:4222 -e REDIS_URL=redis://redis:6379 \
    -e RELAY_CREDENTIALS_ADDR=credentials:50052 -e RELAY_INTERNAL_HOST=0.0.0.0 \
    -e RELAY_SHUTDOWN_GRACE=5s "$IMAGE" "$name"
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
envelope_key=$(head -c 32 /dev/urandom | base64)
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
node_modules/.bin/node cli/dist/main.js send --address "$address" --api-key="$api_key" --sender ci \
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
  printf %s "ops-$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')" >"$cdir/secrets/ops-api-key"
  node_modules/.bin/node tools/dist/stack/nats-auth-cli.js --out "$cdir/secrets/nats" >/dev/null
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
  node_modules/.bin/node cli/dist/main.js send --address "$address" --api-key="$api_key" --sender ci \
    --to student@campus.test --subject "compose $run_id" --wait >/dev/null
  docker logs "$run_id-compose-sink" 2>&1 | grep -q "received: compose $run_id" || { echo "containers: compose: the sink did not receive the message" >&2; exit 1; }
  docker rm -f "$run_id-compose-sink" >/dev/null # on the project's network: before down removes it
  compose down -v --remove-orphans >/dev/null 2>&1
  compose_up=0
  step "deploy/compose.yaml: up with 3 smtp-senders, message delivered, down"
fi

# A 3-server NATS cluster, the services on it with 3 replicas of every stream and bucket, a steady
# send, one server killed mid-stream and started again on its store: every accepted message is
# delivered, and delivery goes on while the server is away.
cnet=$run_id-cluster
docker network create "$cnet" >/dev/null
routes=nats://nats-1:6222,nats://nats-2:6222,nats://nats-3:6222
for i in 1 2 3; do
  # One alias for all three, as a Kubernetes Service gives: clients reach whichever answers.
  docker run -d --label "$run_id" --network "$cnet" --name "$run_id-nats-$i" --network-alias nats --network-alias "nats-$i" \
    -p 127.0.0.1::4222 relay-test/nats:2.9 -js -sd /data -n "nats-$i" --cluster_name relay --cluster nats://0.0.0.0:6222 --routes "$routes" >/dev/null
done
meta_leader() { for i in 1 2 3; do docker logs "$run_id-nats-$i" 2>&1 | grep -q 'Self is new JetStream cluster metadata leader' && { echo "$i"; return; }; done; }
for _ in $(seq 1 150); do [ -n "$(meta_leader)" ] && break; sleep 0.2; done
[ -n "$(meta_leader)" ] || { echo "containers: the NATS cluster elected no JetStream leader" >&2; exit 1; }
crun() { docker run -d --label "$run_id" --network "$cnet" "$@" >/dev/null; }
crun --name "$run_id-c-redis" --network-alias redis relay-test/redis:7 --save '' --appendonly no
crun --name "$run_id-c-sink" --network-alias sink -v "$work/sink.mjs:/app/sink.mjs:ro" --entrypoint node "$IMAGE" /app/sink.mjs
cservice() {
  local name=$1; shift
  local token=$internal_token
  [ "$name" = ingest ] && token=$ingest_token
  crun --name "$run_id-c-$name" --network-alias "$name" "$@" \
    -v "$work/relay.yaml:/etc/relay/relay.yaml:ro" -e NATS_URL=nats://nats:4222 -e REDIS_URL=redis://redis:6379 \
    -e RELAY_MASTER_KEY="$master_key" -e CI_API_KEY="$api_key" -e RELAY_CREDENTIALS_ADDR=credentials:50052 -e RELAY_INTERNAL_HOST=0.0.0.0 \
    -e RELAY_INTERNAL_TOKEN="$token" -e RELAY_INTERNAL_ADMIN_TOKEN="$ingest_token" \
    -e RELAY_ENVELOPE_KEY="$envelope_key" -e RELAY_JS_REPLICAS=3 -e RELAY_ACK_WAIT=10s -e RELAY_SHUTDOWN_GRACE=5s "$IMAGE" "$name"
}
cservice credentials
wait_ready c-credentials
cservice ingest -p 127.0.0.1::50051
for name in scheduler smtp-sender graph-sender; do cservice "$name"; done
wait_ready c-ingest c-scheduler c-smtp-sender c-graph-sender
streams=$(node_modules/.bin/node .ci/js-streams.mjs "nats://$(docker port "$run_id-nats-1" 4222/tcp | head -1)")
[ -n "$streams" ] && ! echo "$streams" | awk '$2 != 3' | grep -q . || { echo "containers: streams not replicated 3 times:"; echo "$streams"; exit 1; } >&2
step "NATS cluster of 3 up, the services on it, $(echo "$streams" | wc -l) streams with 3 replicas each"

# The server leading the dispatch stream goes: its streams elect new leaders on the other two.
victim=$(echo "$streams" | awk '$1 ~ /_DISPATCH$/ { print $3 }')
[[ "$victim" =~ ^nats-[123]$ ]] || victim=nats-$(meta_leader)
address=$(docker port "$run_id-c-ingest" 50051/tcp | head -1)
label="cluster $run_id"
accepted() { { wc -l <"$work/progress"; } 2>/dev/null || echo 0; }
received() { docker logs "$run_id-c-sink" 2>&1 | grep -c "received: $label #" || true; }
wait_for() { # wait_for WHAT SECONDS 'CONDITION': until the condition (evaluated each time) holds
  local what=$1 secs=$2 cond=$3
  for _ in $(seq 1 $((secs * 5))); do eval "$cond" && return 0; sleep 0.2; done
  echo "containers: cluster: timed out waiting for $what" >&2; return 1
}
node_modules/.bin/node .ci/steady-send.mjs "$address" "$api_key" ci "$label" 120 100 "$work/progress" >"$work/steady.log" 2>&1 &
steady=$!
wait_for "the first messages" 30 '[ "$(accepted)" -ge 20 ]'
docker kill "$run_id-$victim" >/dev/null
before=$(received)
step "killed $victim (leader of the dispatch stream) after $(accepted) messages were accepted"
wait_for "delivery with $victim away" 60 '[ "$(received)" -ge $((before + 20)) ]'
docker start "$run_id-$victim" >/dev/null
step "$((  $(received) - before )) messages delivered while $victim was away; $victim started again"
wait "$steady" || { cat "$work/steady.log"; echo "containers: cluster: not every accepted message ended SENT" >&2; exit 1; }
cat "$work/steady.log"
docker logs "$run_id-c-sink" >"$work/sink.log" 2>&1
lost=0
for n in $(awk '{ print $2 }' "$work/progress"); do
  grep -qx "received: $label #$n" "$work/sink.log" || { echo "containers: cluster: message $n accepted, never delivered" >&2; lost=$((lost + 1)); }
done
copies=$(grep "received: $label #" "$work/sink.log" | sort | uniq -d | wc -l)
[ "$lost" = 0 ] || exit 1
step "3-server cluster: $(accepted) accepted, all delivered, none lost ($copies delivered twice), with one server killed and back"

if [ "${RELAY_CI_SKIP_SUITE:-}" != 1 ]; then
  RELAY_TEST_CONTAINERS=1 TESTCONTAINERS_RYUK_DISABLED=true TESTCONTAINERS_HOST_OVERRIDE=127.0.0.1 \
    RELAY_NATS_IMAGE=relay-test/nats:2.9 RELAY_REDIS_IMAGE=relay-test/redis:7 \
    npx vitest run test/delivery.test.ts tools/src/stack/infra.test.ts
  step "delivery suite and the stack's container start passed with NATS and Redis in containers"
fi
