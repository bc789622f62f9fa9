set -e
uri=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources)
cat > /etc/apt/sources.list.d/backports.sources <<EOT
Types: deb
URIs: $uri
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOT
apt-get update -q
DEBIAN_FRONTEND=noninteractive apt-get install -y -q mmdebstrap debootstrap e2fsprogs grub-pc-bin grub-common mtools dosfstools ubuntu-keyring debian-archive-keyring fdisk dpkg-dev apt-utils gnupg arch-test uidmap squashfs-tools zstd xz-utils
DEBIAN_FRONTEND=noninteractive apt-get install -y -q -t bookworm-backports qemu-system-x86
# disk/convert: qemu-img for output formats; OVMF for the UEFI boot test of GPT images
DEBIAN_FRONTEND=noninteractive apt-get install -y -q qemu-utils ovmf
