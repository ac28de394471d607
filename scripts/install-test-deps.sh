#!/usr/bin/env bash
# Installs what the tests run against, from the package registries, into
# .test-deps/ (git-ignored): Etsy's statsd 0.9.0 from npm. Idempotent; fails
# loudly if anything cannot be installed (tests never skip silently).
set -euo pipefail
cd "$(dirname "$0")/.."
deps=.test-deps
mkdir -p "$deps"

need_apt=()
command -v node >/dev/null || need_apt+=(nodejs)
command -v npm >/dev/null || need_apt+=(npm)
# A real carbon-cache and carbon's own hash ring (Debian's graphite-carbon).
[ -x /usr/bin/carbon-cache ] || need_apt+=(graphite-carbon)
if [ "${#need_apt[@]}" -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi
# graphite-web 1.1.8 (the read API's oracle, run with Debian's python3),
# collectd (write_graphite) and carbon-c-relay (senders for the carbon
# receivers); without recommends, so no web server or daemon comes along.
need_plain=()
[ -f /usr/lib/python3/dist-packages/graphite/render/views.py ] || need_plain+=(graphite-web)
[ -x /usr/sbin/collectd ] || need_plain+=(collectd-core)
[ -x /usr/bin/carbon-c-relay ] || need_plain+=(carbon-c-relay)
# VictoriaMetrics: the distributed store sluice forwards into (tests/victoria.rs).
[ -x /usr/bin/victoria-metrics ] || need_plain+=(victoria-metrics)
# A real browser for the page's tests (headless).
[ -x /usr/bin/chromium ] || need_plain+=(chromium fonts-dejavu-core)
if [ "${#need_plain[@]}" -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_plain[@]}"
fi
/usr/bin/python3 -c 'import django, graphite' || { echo "graphite-web is missing" >&2; exit 1; }

if [ ! -f "$deps/node_modules/statsd/stats.js" ] || \
   ! grep -q '"version": "0.9.0"' "$deps/node_modules/statsd/package.json"; then
  rm -rf "$deps/node_modules"
  # --ignore-scripts: statsd's optional syslog addon needs a compiler and is
  # not used by the tests.
  npm install --silent --no-audit --no-fund --ignore-scripts --prefix "$deps" statsd@0.9.0
fi
test -f "$deps/node_modules/statsd/stats.js"

# Python's whisper 1.1.10 (the reference the fixtures were made with), in a
# virtualenv of its own.
if [ ! -x "$deps/venv/bin/python" ]; then
  python3 -m venv "$deps/venv" || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
    python3 -m venv "$deps/venv"
  }
fi
if ! "$deps/venv/bin/pip" show whisper 2>/dev/null | grep -qx 'Version: 1.1.10'; then
  "$deps/venv/bin/pip" install --quiet --disable-pip-version-check whisper==1.1.10
fi
"$deps/venv/bin/python" -c 'import whisper; print("python whisper ready:", whisper.__file__)'
# The Datadog Python client: a real DogStatsD sender over unix sockets.
# The page's live tests drive chromium over the DevTools protocol.
if ! "$deps/venv/bin/pip" show websocket-client 2>/dev/null | grep -qx 'Version: 1.8.0'; then
  "$deps/venv/bin/pip" install --quiet --disable-pip-version-check websocket-client==1.8.0
fi
if ! "$deps/venv/bin/pip" show datadog 2>/dev/null | grep -qx 'Version: 0.50.2'; then
  "$deps/venv/bin/pip" install --quiet --disable-pip-version-check datadog==0.50.2
fi
"$deps/venv/bin/python" -c 'import datadog'

/usr/bin/python3 -c 'import carbon.hashing' || { echo "carbon's python module is missing" >&2; exit 1; }
echo "test dependencies ready in $deps"
