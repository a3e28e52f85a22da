#!/usr/bin/env bash
# Build the local image the example job files use under Docker, `local/busybox:1`, from
# the host's static busybox (Debian: `apt-get install busybox-static`), with
# `docker import`: no registry needed.
#
#     bash examples/make-busybox-image.sh [IMAGE]      # default local/busybox:1
set -euo pipefail
image=${1:-local/busybox:1}
busybox=$(command -v busybox || true)
[ -n "$busybox" ] || { echo "error: busybox not found (apt-get install busybox-static)" >&2; exit 1; }
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,etc,www,proc,sys,dev,root,tmp}
chmod 1777 "$root/tmp"
cp "$busybox" "$root/bin/busybox"
for applet in $("$busybox" --list); do
    [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
done
echo "hello from helios" > "$root/www/index.html"
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' > "$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
tar -C "$root" -c . | docker import - "$image" >/dev/null
echo "built $image"
