#!/usr/bin/env bash
# Builds the OCI image localhost/defender-alertd:VERSION (and :latest) with Podman, offline:
# no registry, no base image. Its root filesystem is the daemon (the .deb's static binary,
# stripped), the shared libraries it loads and the CA certificates, each taken from the
# Debian package that installed it on this machine (their copyright files go along, and a list
# of the packages and versions is kept in the image), a passwd and group naming the daemon's
# user (65532), and the directories it is given as volumes. No shell, no package manager.
#
# Usage: scripts/build-image.sh BUILD_DIR VERSION [SOURCE_URL]
#   BUILD_DIR holds defender-alertd (make image: the release build; make test: package-debug).
# Environment: IMAGE (default localhost/defender-alertd), ROOTFS (default .build/image/rootfs).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:?usage: build-image.sh BUILD_DIR VERSION [SOURCE_URL]}
version=${2:?usage: build-image.sh BUILD_DIR VERSION [SOURCE_URL]}
source_url=${3:-}
image=${IMAGE:-localhost/defender-alertd}
rootfs=${ROOTFS:-.build/image/rootfs}
binary="$build/defender-alertd"
[ -x "$binary" ] || { echo "build-image: $binary is not built" >&2; exit 1; }

rm -rf "$rootfs"
# Mount points, made here because a read-only root filesystem cannot have them made at run time:
# the configuration, the state, a file sink's directory, secrets, and /run and /tmp (Podman
# mounts a tmpfs on each with --read-only).
mkdir -p "$rootfs"/usr/bin "$rootfs"/etc/ssl/certs "$rootfs"/etc/defender-alertd "$rootfs"/var/lib/defender-alertd \
    "$rootfs"/var/log/defender-alertd "$rootfs"/run/secrets "$rootfs"/tmp \
    "$rootfs"/usr/share/doc/defender-alertd "$rootfs"/usr/share/defender-alertd
chmod 1777 "$rootfs"/tmp
install -m 0755 -s "$binary" "$rootfs/usr/bin/defender-alertd"

# The shared libraries as the dynamic loader finds them here (ldd), at the same paths, and the
# loader itself; each file's Debian package recorded.
packages=()
add_file() {  # PATH: copies the file (not a link) to the same path in the image
    local path=$1 real package
    real=$(readlink -f "$path")
    install -D -m 0644 "$real" "$rootfs$path"
    [ "${path#/lib64/}" = "$path" ] || chmod 0755 "$rootfs$path"
    package=$(dpkg -S "$real" 2>/dev/null | head -n 1 | cut -d: -f1) \
        || package=$(dpkg -S "$path" 2>/dev/null | head -n 1 | cut -d: -f1) \
        || { echo "build-image: $path belongs to no Debian package" >&2; exit 1; }
    packages+=("$package")
}
while read -r line; do
    case "$line" in
        *"=> not found"*) echo "build-image: $binary needs a library not found: $line" >&2; exit 1 ;;
        *"=> /"*) add_file "$(awk '{print $3}' <<<"$line")" ;;
        /*) add_file "$(awk '{print $1}' <<<"$line")" ;;
    esac
done < <(ldd "$binary")
# The CA certificates (Debian's bundle, made by ca-certificates from Mozilla's list).
install -m 0644 "$(readlink -f /etc/ssl/certs/ca-certificates.crt)" "$rootfs/etc/ssl/certs/ca-certificates.crt"
packages+=(ca-certificates)
# Names for the daemon's user and group; /etc/hosts first, then DNS.
printf 'root:x:0:0:root:/root:/usr/sbin/nologin\ndefender-alertd:x:65532:65532:defender-alertd:/var/lib/defender-alertd:/usr/sbin/nologin\n' \
    > "$rootfs/etc/passwd"
printf 'root:x:0:\ndefender-alertd:x:65532:\n' > "$rootfs/etc/group"
printf 'passwd: files\ngroup: files\nhosts: files dns\n' > "$rootfs/etc/nsswitch.conf"
chmod 0644 "$rootfs"/etc/passwd "$rootfs"/etc/group "$rootfs"/etc/nsswitch.conf
# Licences: the daemon's (with the Swift packages linked into it) and each Debian package's.
install -m 0644 debian/copyright "$rootfs/usr/share/doc/defender-alertd/copyright"
install -m 0644 config/defender-alertd.toml "$rootfs/usr/share/doc/defender-alertd/defender-alertd.toml.example"
mapfile -t packages < <(printf '%s\n' "${packages[@]}" | sort -u)
for package in "${packages[@]}"; do
    name=${package%%:*}
    [ -f "/usr/share/doc/$name/copyright" ] && install -D -m 0644 "/usr/share/doc/$name/copyright" "$rootfs/usr/share/doc/$name/copyright"
    dpkg-query -W -f='${Package} ${Version}\n' "$package"
done > "$rootfs/usr/share/defender-alertd/debian-packages.txt"

# The image's creation time is the commit's (or the changelog's), not the clock's: the same
# tree gives the same image configuration.
created=$(git log -1 --format=%ct 2>/dev/null || date -d "$(dpkg-parsechangelog -S Date)" +%s)
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
labels=(
    "org.opencontainers.image.title=defender-alertd"
    "org.opencontainers.image.description=Forwards Microsoft Defender alerts to the journal, files, syslog and HTTP receivers"
    "org.opencontainers.image.version=$version"
    "org.opencontainers.image.revision=$revision"
    "org.opencontainers.image.licenses=Apache-2.0"
    "org.opencontainers.image.base.name=scratch"
)
[ -z "$source_url" ] || labels+=("org.opencontainers.image.source=$source_url")
arguments=()
for label in "${labels[@]}"; do arguments+=(--label "$label" --annotation "$label"); done
podman build --quiet --format oci --network none --timestamp "$created" --identity-label=false \
    "${arguments[@]}" --tag "$image:$version" --tag "$image:latest" \
    --file deploy/container/Containerfile "$rootfs" >/dev/null
size=$(podman image inspect --format '{{.Size}}' "$image:$version")
echo "built $image:$version and :latest ($((size / 1024 / 1024)) MiB; $(wc -l < "$rootfs/usr/share/defender-alertd/debian-packages.txt") Debian packages)"
