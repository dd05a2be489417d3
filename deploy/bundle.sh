#!/bin/sh
# Packs the built services, the `relay` command and the web console into a tar for the image:
# package.json files, dist/ (and the console's), production node_modules (no dev dependencies, no
# tools or tests), and the entry point relay.mjs.
# Usage: deploy/bundle.sh OUT.tar [extra npm install flags, e.g. --prefer-offline]. Run after `npm run build`.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
out=$1; shift
case $out in /*) ;; *) out=$PWD/$out ;; esac
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT INT TERM
cd "$root"
cp package.json package-lock.json deploy/relay.mjs "$stage/"
for dir in libs/* services/* cli console tools test; do
  [ -f "$dir/package.json" ] || continue
  mkdir -p "$stage/$dir"
  cp "$dir/package.json" "$stage/$dir/"
done
workspaces=''
for dir in services/* cli; do
  [ -d "$dir/dist" ] || { echo "bundle: $dir/dist is missing; run npm run build first" >&2; exit 1; }
  workspaces="$workspaces --workspace=$dir"
done
for dir in libs/* services/* cli; do
  [ "$dir" = libs/testkit ] && continue
  [ -d "$dir/dist" ] && cp -R "$dir/dist" "$stage/$dir/"
done
cp -R cli/bin "$stage/cli/"
# The web console: static files ingest serves (built by Vite; no runtime dependencies).
[ -d console/dist ] || { echo "bundle: console/dist is missing; run npm run build first" >&2; exit 1; }
cp -R console/dist "$stage/console/"
# Only the services' production dependencies (and the libraries they use); no install scripts.
# `npm install` rather than `npm ci`: the lock holds only this platform's optional packages.
(cd "$stage" && npm install --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error $workspaces "$@")
tar -C "$stage" -cf "$out" .
