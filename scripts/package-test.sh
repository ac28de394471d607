#!/usr/bin/env bash
# Packaging checks: builds the Debian package with cargo-deb (installed from
# crates.io when missing), checks its contents, installs it, verifies the
# systemd unit with systemd-analyze and the packaged config with the
# packaged binary, then removes it again.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo-deb >/dev/null || cargo install --locked --quiet cargo-deb
command -v systemd-analyze >/dev/null || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd
}

deb=$(cargo deb --locked 2>/dev/null | tail -n 1)
test -f "$deb" || { echo "cargo deb produced no package" >&2; exit 1; }
echo "package: $deb"

contents=$(dpkg -c "$deb")
for path in ./usr/bin/sluice ./etc/sluice/sluice.toml ./etc/sluice/storage-schemas.conf \
            ./etc/sluice/storage-aggregation.conf ./usr/lib/systemd/system/sluice.service \
            ./usr/lib/sysctl.d/60-sluice.conf; do
  grep -q " $path\$" <<<"$contents" || { echo "missing from the package: $path" >&2; exit 1; }
done
dpkg-deb -f "$deb" Package Version Depends
dpkg-deb -e "$deb" /tmp/sluice-deb-control
grep -qx /etc/sluice/sluice.toml /tmp/sluice-deb-control/conffiles || { echo "sluice.toml is not a conffile" >&2; exit 1; }
rm -rf /tmp/sluice-deb-control

# Install for real, verify the installed unit and the packaged config.
DEBIAN_FRONTEND=noninteractive dpkg -i "$deb" >/dev/null
trap 'dpkg -P sluice >/dev/null 2>&1 || true' EXIT
# verify exits 0 even for a directive it ignores: any word about our unit fails.
verify=$(systemd-analyze verify /usr/lib/systemd/system/sluice.service 2>&1) || { echo "$verify" >&2; exit 1; }
if grep -q "sluice.service" <<<"$verify"; then echo "$verify" >&2; exit 1; fi
/usr/bin/sluice check-config --config /etc/sluice/sluice.toml >/dev/null
echo "package checks passed"
