#!/bin/sh
# mmdebstrap customize hook: lays Node out in the Debian root file system the way the official
# node:<major>-slim image has it (the release tarball unpacked into /usr/local), adds the
# `node` user and the entrypoint. Runs on the host, as root, with the root file system at $1.
#   $1 root file system   $2 staged inputs (node/, npm.tgz, corepack.tgz, docker-entrypoint.sh)
#   $3 the one OpenSSL arch whose headers stay (the official image drops the other ~34 MB)
set -eu
root=$1 inputs=$2 openssl_arch=$3
local=$root/usr/local

cp -a "$inputs/node/bin/node" "$local/bin/node"
cp -a "$inputs/node/include" "$local/"
cp -a "$inputs/node/share/." "$local/share/"
find "$local/include/node/openssl/archs" -mindepth 1 -maxdepth 1 ! -name "$openssl_arch" -exec rm -rf {} +

for pkg in npm corepack; do
  mkdir -p "$local/lib/node_modules/$pkg"
  tar -xzf "$inputs/$pkg.tgz" -C "$local/lib/node_modules/$pkg" --strip-components=1 --no-same-owner
done
# Registry tarballs do not keep the executable bit that Node's release tarball has.
chmod 0755 "$local/lib/node_modules/npm/bin/npm-cli.js" "$local/lib/node_modules/npm/bin/npx-cli.js" \
  "$local/lib/node_modules/corepack/dist/corepack.js"
ln -s ../lib/node_modules/npm/bin/npm-cli.js "$local/bin/npm"
ln -s ../lib/node_modules/npm/bin/npx-cli.js "$local/bin/npx"
ln -s ../lib/node_modules/corepack/dist/corepack.js "$local/bin/corepack"
ln -s node "$local/bin/nodejs"
install -m 0755 "$inputs/docker-entrypoint.sh" "$local/bin/docker-entrypoint.sh"

# Debian's container images keep apt from caching .deb files and package indexes in the image
# (a Dockerfile that installs packages and removes only the lists relies on it).
cat > "$root/etc/apt/apt.conf.d/docker-clean" <<'APT'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
APT
echo 'Apt::AutoRemove::SuggestsImportant "false";' > "$root/etc/apt/apt.conf.d/docker-autoremove-suggests"
rm -f "$root"/var/cache/apt/*.bin

# mmdebstrap copies the host's resolver config and name in; a runtime provides its own.
rm -f "$root/etc/resolv.conf" "$root/etc/hostname"

chroot "$root" groupadd --gid 1000 node
chroot "$root" useradd --uid 1000 --gid node --shell /bin/bash --create-home node
