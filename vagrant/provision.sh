#!/usr/bin/env bash
# Turns a Debian 12 machine into an injector lab: Docker, injector built from source and run by
# systemd on 127.0.0.1:8474 (injector.service), and the demo lab. Run as root; idempotent.
#
#   provision.sh [--src DIR] [--binary FILE]
#     --src DIR      the injector repository (default: the directory above this script)
#     --binary FILE  install this injector binary instead of building one: no Rust toolchain
#                    and no network needed if Docker is installed already. That is how
#                    `cargo xtask vm-test --provision` runs this script in its offline VM.
#
# Vagrant runs it with --src /vagrant (see the Vagrantfile).
set -euo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
binary=""
while [ $# -gt 0 ]; do
  case "$1" in
    --src) src=$2; shift 2 ;;
    --binary) binary=$2; shift 2 ;;
    *) echo "provision.sh: unknown argument: $1" >&2; exit 2 ;;
  esac
done

say() { printf '==> %s\n' "$*"; }

# Enables a unit and (re)starts it; if it does not come up, shows why before failing.
# Enabling only when needed keeps a second provisioning quick.
run_unit() {
  local verb=$1 unit=$2
  systemctl is-enabled --quiet "$unit" || systemctl enable "$unit"
  if ! systemctl "$verb" "$unit"; then
    journalctl --no-pager -n 40 -u "$unit" || true
    exit 1
  fi
}

export DEBIAN_FRONTEND=noninteractive
# apparmor: with AppArmor on (Debian's default kernel), dockerd needs apparmor_parser to
# start any container.
packages=(docker.io apparmor)
if [ -z "$binary" ]; then
  # What rustup and the build need; `cargo xtask setup` installs the rest (LLVM, tools).
  packages+=(build-essential ca-certificates curl git pkg-config)
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null | grep -q '^ii' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  apt-get -q update
  apt-get -q install -y "${missing[@]}"
fi
say "starting Docker"
run_unit start docker.service

if [ -z "$binary" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
  if ! command -v rustup >/dev/null; then
    say "installing rustup"
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs |
      sh -s -- -y --profile minimal --default-toolchain stable
  fi
  rustup toolchain install stable --profile minimal --component clippy,rustfmt
  rustup toolchain install nightly --profile minimal --component rust-src,clippy
  # Outside the synced folder: the host's target/ is not the box's.
  export CARGO_TARGET_DIR=/var/lib/injector/build
  say "building injector"
  (cd "$src" && cargo xtask setup && cargo build --release -p injector)
  binary=$CARGO_TARGET_DIR/release/injector
fi

say "installing injector.service"
install -m 0755 "$binary" /usr/local/bin/injector
unit=$(cat <<'UNIT'
[Unit]
Description=injector: network faults in the kernel behind ToxiProxy's REST API
Wants=docker.service
After=network-online.target docker.service

[Service]
ExecStart=/usr/local/bin/injector serve --host 127.0.0.1 --port 8474
Restart=on-failure

[Install]
WantedBy=multi-user.target
UNIT
)
unit_file=/etc/systemd/system/injector.service
if [ "$(cat "$unit_file" 2>/dev/null)" != "$unit" ]; then
  printf '%s\n' "$unit" > "$unit_file"
  systemctl daemon-reload
fi
# restart, not start: a second provisioning must run the binary it just installed.
run_unit restart injector.service

# injector's help marks commands still being written "(not yet available)".
if /usr/local/bin/injector help | grep -E '^ +lab ' | grep -qv 'not yet available'; then
  say "starting the demo lab"
  /usr/local/bin/injector lab up
else
  say "this injector has no demo lab yet: skipped 'injector lab up'"
fi
say "done: injector listens on 127.0.0.1:8474 (systemctl status injector)"
