#!/usr/bin/env bash
# Writes the seed corpus of every fuzz target into fuzz/corpus/<target>/
# (made here, not committed): real-looking inputs of each protocol.
set -euo pipefail
cd "$(dirname "$0")"
seed() { mkdir -p "corpus/$1"; printf '%b' "$3" > "corpus/$1/$2"; }
seed statsd_packet plain 'api.hits:1|c\napi.lat:12.5|ms|@0.5\nmem:+5|g\nusers:alice|s\n'
seed statsd_packet dogstatsd 'page.views:1|c|#env:prod,az:b|@0.1\n_e{5,4}:title|text\n_sc|svc|0\n'
seed statsd_packet multi 'multi:1|c:2|c\nbad:abc|c\nneg:-1|ms\nh:3|h\nd:4|d\n'
seed carbon_line lines 'a.b.c 1.5 1700000000\nx\t 2   1699999999.9\r\nn nan 1\nnow 3 -1\n'
seed carbon_line tagged 'disk.used;dc=eu;host=a 4 1700000000\n'
seed render_target sum 'sumSeries(a.*)'
seed render_target grafana 'aliasSub(a.b, "(^.*$)", "\\\\1 A")'
seed render_target nested 'alias(summarize(movingAverage(a.{b,c},3),"1min","max",true),"x")'
seed render_target pipe 'a.b|scale(2)|timeShift("-1h")'
seed time_grammar rel '-2h30min'
seed time_grammar ref 'noon_yesterday'
seed time_grammar date '13:45_20261201'
seed read_api_request render 'target=sumSeries(a.*)&from=-1h&format=json&maxDataPoints=3&now=1700000000'
seed read_api_request find 'query=a.*&format=treejson'
seed read_api_request completer 'query=a.&format=completer'
mkdir -p corpus/pickle corpus/whisper_file
if command -v python3 >/dev/null; then
  python3 - <<'PY'
import pickle
for proto in (0, 2, 4):
    open("corpus/pickle/proto%d" % proto, "wb").write(pickle.dumps([("a.b", (1700000000, 1.5)), ("c", ("1700000000", "2"))], protocol=proto))
PY
fi
# A valid whisper file: header for 10s:1h,1m:1d, zeroed archives.
python3 - <<'PY'
import struct
archives = [(10, 360), (60, 1440)]
off = 16 + 12 * len(archives)
head = struct.pack(">LLfL", 1, 86400, 0.5, len(archives))
body = b""
for spp, pts in archives:
    head += struct.pack(">LLL", off, spp, pts)
    off += 12 * pts
open("corpus/whisper_file/valid", "wb").write(head + b"\0" * (off - len(head)))
PY
echo "seed corpus ready in fuzz/corpus"
