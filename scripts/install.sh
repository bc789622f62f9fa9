#!/usr/bin/env bash
# One command from a fresh Debian 12 checkout to an installed `mesos-image`: system packages
# (and a Rust toolchain if there is none), then the binary into /usr/local/bin and its elements and
# recipes into /usr/local/share/mesos-image. Run as root from the checkout.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
prefix=${PREFIX:-/usr/local}

bash "$here/scripts/install-deps.sh"
cargo install --locked --path "$here" --root "$prefix"
# The binary looks for its data in <prefix>/share/mesos-image (see src/paths.rs).
share="$prefix/share/mesos-image"
rm -rf "$share.new"
mkdir -p "$share.new"
cp -a "$here/elements" "$here/recipes" "$share.new/"
rm -rf "$share"
mv "$share.new" "$share"
echo "installed $prefix/bin/mesos-image ($("$prefix/bin/mesos-image" --version)); data in $share"
