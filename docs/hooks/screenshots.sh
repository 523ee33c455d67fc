#!/usr/bin/env bash
# Re-take the TensorBoard screenshots of docs/images/ (needs Debian's chromium: apt-get install chromium).
set -euo pipefail
cd "$(dirname "$0")/../.."
run=$(mktemp -d)
nasframe search spaces/mnist1d.yaml --out "$run/mnist1d-cnn" --quiet --set search.epochs=20 --set search.warmup_epochs=5
tensorboard --logdir "$run" --port 6007 >/dev/null 2>&1 & tb=$!
trap 'kill $tb' EXIT
sleep 8
shot() { chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1400,1000 \
  --virtual-time-budget=15000 --screenshot="docs/images/$1" "http://localhost:6007/?darkMode=false#$2" >/dev/null 2>&1; }
shot tensorboard-scalars.png 'scalars&tagFilter=%5E(train%7Cvalid%7Ctest)%2F%7Casng%2Fdelta'
shot tensorboard-images.png images
