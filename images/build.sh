#!/usr/bin/env bash
# Builds the Debian cloud base image described by a recipe (images/debian-*/recipe.toml) into a qcow2
# disk that boots through UEFI firmware alone (OVMF -> systemd-boot -> linux-image-cloud-amd64).
# One script for every release: what differs between releases is data in the recipe.
# No loop devices, no mounts: the rootfs is a plain directory made by mmdebstrap; the ESP is a vfat
# image filled with mtools and put in with dd conv=notrunc; the root ext4 is made from the tree
# straight into its partition (mkfs.ext4 -d -E offset=); the GPT comes from sfdisk on the file.
#
# usage: build.sh OUTPUT.qcow2 [--recipe FILE] [--workdir DIR] [--keep-workdir]
#   --recipe: default recipe.toml beside this script (how `kiln image build` lays them out, with
#   dpkg-filter-hook.py, which must be beside this script);
#   from the repository: images/build.sh --recipe images/debian-13/recipe.toml OUT.qcow2
# needs: root (mmdebstrap --mode=root and a rootfs tree owned by real uids for mkfs.ext4 -d),
#        mmdebstrap, e2fsprogs, dosfstools, mtools, fdisk (sfdisk), qemu-utils, python3 >= 3.11, runuser (util-linux).
# writes: OUTPUT.qcow2, OUTPUT.manifest (dpkg-query of the image), OUTPUT.dpkg-status, OUTPUT.sha256,
#         OUTPUT.digests (rootfs content digest, ESP sha256, kernel version: stable across builds)
# default work directory: a new /var/tmp/kiln-image/build.XXXXXX, removed on success.

# Single-quoted $1/${…} strings are for mmdebstrap hooks and dpkg-query formats.
# shellcheck disable=SC2016
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
recipe=$here/recipe.toml
workdir=
keep_workdir=0
output=

usage() { sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }

while [ $# -gt 0 ]; do
  case $1 in
    --workdir) workdir=$2; shift 2 ;;
    --recipe) recipe=$2; shift 2 ;;
    --keep-workdir) keep_workdir=1; shift ;;
    -h|--help) usage ;;
    -*) echo "unknown option: $1" >&2; usage ;;
    *) [ -z "$output" ] || usage; output=$1; shift ;;
  esac
done
[ -n "$output" ] || usage
[ -f "$recipe" ] || { echo "build.sh: no recipe at $recipe (pass --recipe images/debian-NN/recipe.toml)" >&2; exit 2; }
case $output in /*) ;; *) output=$PWD/$output ;; esac

if [ "$(id -u)" -ne 0 ]; then
  echo "build.sh: must run as root (mmdebstrap --mode=root; mkfs.ext4 -d copies file owners as they are)" >&2
  exit 1
fi
for tool in mmdebstrap mkfs.ext4 mkfs.vfat mcopy mmd sfdisk qemu-img /usr/bin/python3 systemctl runuser; do
  command -v "$tool" >/dev/null || { echo "build.sh: missing tool: $tool" >&2; exit 1; }
done

# ---- timing helpers: every phase prints "phase NAME: N.NN s" to stderr ----------------------
t_start=$(date +%s.%N)
phase_name=
phase_t0=
phase() {
  phase_end
  phase_name=$1
  phase_t0=$(date +%s.%N)
  echo "==> $phase_name" >&2
}
phase_end() {
  if [ -n "$phase_name" ]; then
    awk -v n="$phase_name" -v a="$phase_t0" -v b="$(date +%s.%N)" 'BEGIN { printf "phase %s: %.2f s\n", n, b - a }' >&2
  fi
  phase_name=
}

# ---- recipe ----------------------------------------------------------------------------------
# tomllib -> shell assignments (shlex-quoted), so the rest of the script is plain bash.
eval "$(/usr/bin/python3 - "$recipe" <<'PY'
import shlex, sys, tomllib
r = tomllib.load(open(sys.argv[1], "rb"))
out = {}
out["SDE"] = r["image"]["source_date_epoch"]
out["SUITE"] = r["bootstrap"]["suite"]
out["VARIANT"] = r["bootstrap"]["variant"]
out["PACKAGES"] = ",".join(r["bootstrap"]["packages"])
d = r["disk"]
out["DISK_MIB"] = d["size_mib"]
out["LABEL_ID"] = d["label_id"]
esp, root = d["partitions"]
assert esp["fs"] == "vfat" and root["fs"] == "ext4"
for p, pre in ((esp, "ESP"), (root, "ROOT")):
    for k in ("type", "uuid", "start_mib", "size_mib", "fs_label", "name"):
        out[f"{pre}_{k.upper()}"] = p[k]
out["ESP_FS_ID"] = esp["fs_id"]
out["ROOT_FS_UUID"] = root["fs_uuid"]
b = r["boot"]
out["ENTRY_TOKEN"] = b["entry_token"]
out["CMDLINE"] = b["cmdline"]
out["LOADER_TIMEOUT"] = b["timeout"]
out["DATASOURCES"] = ", ".join(r["cloud_init"]["datasource_list"])
for k, v in out.items():
    print(f"{k}={shlex.quote(str(v))}")
mirrors = r["bootstrap"]["mirrors"]
print("MIRRORS=(" + " ".join(shlex.quote(m) for m in mirrors) + ")")
# dpkg filters, in the order dpkg applies them: a later include overrides an earlier exclude.
filters = [f"path-exclude={p}" for p in r["bootstrap"]["dpkg_path_exclude"]]
filters += [f"path-include={p}" for p in r["bootstrap"]["dpkg_path_include"]]
print("DPKG_FILTERS=(" + " ".join(shlex.quote(f) for f in filters) + ")")
PY
)"

# Root partition: from its start to 1 MiB before the end (room for the backup GPT).
if [ "$ROOT_SIZE_MIB" -eq 0 ]; then
  ROOT_SIZE_MIB=$((DISK_MIB - ROOT_START_MIB - 1))
fi
[ $((ESP_START_MIB + ESP_SIZE_MIB)) -le "$ROOT_START_MIB" ] || { echo "ESP overlaps root" >&2; exit 1; }

export SOURCE_DATE_EPOCH=$SDE
# mkfs.ext4 reads this for every timestamp it invents itself (superblock, lost+found, root dir).
export E2FSPROGS_FAKE_TIME=$SDE
export LC_ALL=C.UTF-8 TZ=UTC

# ---- work directory --------------------------------------------------------------------------
if [ -z "$workdir" ]; then
  mkdir -p /var/tmp/kiln-image
  workdir=$(mktemp -d /var/tmp/kiln-image/build.XXXXXX)
  # mktemp makes it 0700; apt's download sandbox user must be able to reach the rootfs inside (below).
  chmod 0755 "$workdir"
else
  mkdir -p "$workdir"
fi
workdir=$(cd "$workdir" && pwd)
# apt downloads as its sandbox user _apt, who must be able to reach the rootfs. Where it cannot, apt downloads
# as root instead and leaves its partial directories root's, not _apt's: another image from the same recipe
# (seen with a 0700 work directory). So a work directory _apt cannot search is refused, not built from.
if id _apt >/dev/null 2>&1 && ! runuser -u _apt -- test -x "$workdir"; then
  echo "build.sh: apt's sandbox user _apt cannot search $workdir (or a directory above it): give a --workdir that others can search" >&2
  exit 1
fi
rootfs=$workdir/rootfs
cleanup() {
  local rc=$?
  if [ "$keep_workdir" -eq 0 ] && [ $rc -eq 0 ]; then rm -rf "$workdir"; fi
  [ $rc -eq 0 ] || echo "build.sh: failed (rc=$rc); work directory kept: $workdir" >&2
}
trap cleanup EXIT
[ ! -e "$rootfs" ] || rm -rf "$rootfs"

# The image's dpkg filters, for every install from the bootstrap's on (apt in the guest, a bake's packages).
{
  echo "# kiln base image: what dpkg leaves out of every package (images/*/recipe.toml, dpkg_path_*)."
  echo "# Delete this file to have later installs carry documentation, manual pages and translations."
  printf '%s\n' "${DPKG_FILTERS[@]}"
} > "$workdir/kiln-minimal"
# mmdebstrap's extract hook (images/dpkg-filter-hook.py says what it does), beside the filter file it installs.
install -m 0755 "$here/dpkg-filter-hook.py" "$workdir/extract-hook"

# ---- 1. rootfs with mmdebstrap ---------------------------------------------------------------
phase mmdebstrap
mmdebstrap_args=(
  --mode=root
  --format=directory
  --variant="$VARIANT"
  --include="$PACKAGES"
  # Before the kernel is installed: initramfs-tools probes the *device* of / to decide which fsck
  # to put in the initrd; at build time that device does not exist, so the initrd had no fsck.ext4
  # ("Warning: fsck not present, so skipping root file system" on the console). Tell it instead.
  --essential-hook='mkdir -p "$1/etc/initramfs-tools/conf.d" && echo FSTYPE=ext4 > "$1/etc/initramfs-tools/conf.d/kiln-fstype"'
  # One initrd, made once every package is in: the kernel's postinst makes one, and the initramfs-tools
  # trigger that packages with initrd hooks (unpacked before it) activated makes it again, 3-5 s each. So
  # update-initramfs is diverted to a no-op while apt installs, and put back and run once at the end.
  --essential-hook='chroot "$1" dpkg-divert --local --rename --divert /usr/sbin/update-initramfs.kiln-deferred --add /usr/sbin/update-initramfs >/dev/null && printf "#!/bin/sh\n# kiln build.sh: deferred to the end of the bootstrap\nexit 0\n" > "$1/usr/sbin/update-initramfs" && chmod 0755 "$1/usr/sbin/update-initramfs"'
  --customize-hook='rm "$1/usr/sbin/update-initramfs" && chroot "$1" dpkg-divert --local --rename --remove /usr/sbin/update-initramfs >/dev/null && chroot "$1" update-initramfs -c -k all'
  # the host's resolv.conf and hostname are copied in for the build; replaced below
  --customize-hook='rm -f "$1/etc/hostname"'
)
# The recipe's dpkg filters, in the image's own file, from the first package dpkg unpacks: the extract hook
# puts the file in place and removes what the filters exclude from the Essential packages mmdebstrap has
# just extracted (with tar, not dpkg). Not through `--dpkgopt`: mmdebstrap then pipes each Essential
# package through mmtarfilter, a Python process per package, which made the bootstrap 13 s slower
# (1.9 s -> 15.0 s to extract bookworm's, measured on 2026-12-01).
mmdebstrap_args+=(
  --extract-hook="$workdir/extract-hook"
  # dpkg/apt logs carry wall-clock times; mmdebstrap drops some with SOURCE_DATE_EPOCH set
  --customize-hook='rm -f "$1/var/log/alternatives.log" "$1/var/log/bootstrap.log" "$1/var/cache/debconf/"*-old "$1/var/lib/dpkg/"*-old'
)
mmdebstrap "${mmdebstrap_args[@]}" "$SUITE" "$rootfs" "${MIRRORS[@]}" \
  > "$workdir/mmdebstrap.log" 2>&1 || { tail -40 "$workdir/mmdebstrap.log" >&2; exit 1; }

# ---- 2. configure the tree -------------------------------------------------------------------
phase configure
kver=$(find "$rootfs/boot" -maxdepth 1 -name 'vmlinuz-*' -printf '%f\n' | sed 's/^vmlinuz-//' | sort -V | tail -1)
if [ -z "$kver" ] || [ ! -f "$rootfs/boot/initrd.img-$kver" ]; then
  echo "no kernel/initrd in rootfs/boot" >&2; exit 1
fi

cat > "$rootfs/etc/fstab" <<EOF
# <file system>	<mount point>	<type>	<options>	<dump>	<pass>
PARTUUID=$ROOT_UUID	/	ext4	rw,discard,errors=remount-ro	0	1
PARTUUID=$ESP_UUID	/boot/efi	vfat	umask=0077	0	2
EOF
mkdir -p "$rootfs/boot/efi"

# Identity: empty machine-id = "first boot" for systemd (generated, presets applied);
# empty hostname: cloud-init sets it from meta-data (local-hostname) or the instance id.
: > "$rootfs/etc/machine-id"
rm -f "$rootfs/var/lib/dbus/machine-id"
: > "$rootfs/etc/hostname"
cat > "$rootfs/etc/hosts" <<'EOF'
127.0.0.1	localhost
::1		localhost ip6-localhost ip6-loopback
ff02::1		ip6-allnodes
ff02::2		ip6-allrouters
EOF
ln -sfn ../run/systemd/resolve/stub-resolv.conf "$rootfs/etc/resolv.conf"
echo 'LANG=C.UTF-8' > "$rootfs/etc/default/locale"

# No host keys baked in: cloud-init's ssh module generates them per instance.
rm -f "$rootfs"/etc/ssh/ssh_host_*
# Root: locked (base-passwd's "*"); make sure, whatever a package did.
sed -i 's/^root:[^:]*:/root:*:/' "$rootfs/etc/shadow"

# cloud-init: which datasources to probe (ds-identify honours this list).
cat > "$rootfs/etc/cloud/cloud.cfg.d/90_kiln_datasources.cfg" <<EOF
# kiln base image: NoCloud for tests (seed disk labelled cidata), ConfigDrive for OpenStack-likes.
datasource_list: [ $DATASOURCES ]
EOF

# Network: cloud-init (renderer "netplan", since ifupdown is absent) writes
# /etc/netplan/50-cloud-init.yaml and runs "netplan generate"; networkd must already be part of
# the boot transaction (it cannot be pulled in after cloud-init-local has run).
systemctl --root="$rootfs" enable systemd-networkd.service systemd-resolved.service >/dev/null 2>&1
# qemu-guest-agent has no [Install]: udev starts it when the virtio port
# org.qemu.guest_agent.0 appears. Nothing to enable; checked at the end of this phase.
grep -q 'org.qemu.guest_agent.0' "$rootfs/lib/systemd/system/qemu-guest-agent.service"

# Kernel command line and kernel-install layout for kernels installed later in the guest:
# /etc/kernel/postinst.d/zz-systemd-boot (package systemd-boot) runs "kernel-install add" when
# "bootctl is-installed" (ESP mounted at /boot/efi, /EFI/systemd/systemd-bootx64.efi present).
echo "$CMDLINE" > "$rootfs/etc/kernel/cmdline"
echo "$ENTRY_TOKEN" > "$rootfs/etc/kernel/entry-token"
cat > "$rootfs/etc/kernel/install.conf" <<'EOF'
layout=bls
EOF

# Manifest of exactly what is in the image.
chroot "$rootfs" dpkg-query -W -f '${Package}\t${Version}\t${Architecture}\n' | sort > "$workdir/manifest"
cp "$rootfs/var/lib/dpkg/status" "$workdir/dpkg-status"

# Clamp every mtime to SOURCE_DATE_EPOCH (files made by maintainer scripts and by this script carry
# the build time). ctimes cannot be set, and mkfs.ext4 -d copies them: see tree digest below.
find "$rootfs" -newermt "@$SDE" -print0 | xargs -0r touch --no-dereference -d "@$SDE"

# Content digest of the tree (path, type, mode, owner, size, link target, file sha256). Two builds
# from the same mirror state give the same digest even though the ext4 bytes differ (inode ctimes).
(cd "$rootfs" && find . -printf '%p\t%y\t%m\t%u:%g\t%s\t%l\n' | LC_ALL=C sort > "$workdir/tree.list" &&
  find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum > "$workdir/tree.sha256")
tree_digest=$(cat "$workdir/tree.list" "$workdir/tree.sha256" | sha256sum | cut -d' ' -f1)

# ---- 3. ESP image (vfat, filled with mtools) -------------------------------------------------
phase esp
esp=$workdir/esp.img
rm -f "$esp"
mkfs.vfat -C -F 32 --invariant -n "$ESP_FS_LABEL" -i "$ESP_FS_ID" "$esp" $((ESP_SIZE_MIB * 1024)) >/dev/null
export MTOOLS_SKIP_CHECK=1
sdboot=$rootfs/usr/lib/systemd/boot/efi/systemd-bootx64.efi
esp_stage=$workdir/esp
rm -rf "$esp_stage"
mkdir -p "$esp_stage/EFI/BOOT" "$esp_stage/EFI/systemd" "$esp_stage/loader/entries" "$esp_stage/$ENTRY_TOKEN/$kver"
cp "$sdboot" "$esp_stage/EFI/BOOT/BOOTX64.EFI"      # removable-media path: found with no NVRAM entry
cp "$sdboot" "$esp_stage/EFI/systemd/systemd-bootx64.efi"  # what "bootctl is-installed/update" look for
cp "$rootfs/boot/vmlinuz-$kver" "$esp_stage/$ENTRY_TOKEN/$kver/linux"
cp "$rootfs/boot/initrd.img-$kver" "$esp_stage/$ENTRY_TOKEN/$kver/initrd.img-$kver"
cat > "$esp_stage/loader/loader.conf" <<EOF
timeout $LOADER_TIMEOUT
editor no
EOF
# Same name and layout as kernel-install's 90-loaderentry.install would write (entry token dir).
# The title is the release's own name for itself (os-release is shell-sourceable by its specification;
# it is the image's file, so shellcheck cannot follow it).
# shellcheck disable=SC1091
title=$(. "$rootfs/etc/os-release" && echo "$PRETTY_NAME")
cat > "$esp_stage/loader/entries/$ENTRY_TOKEN-$kver.conf" <<EOF
title      $title
version    $kver
sort-key   debian
options    $CMDLINE
linux      /$ENTRY_TOKEN/$kver/linux
initrd     /$ENTRY_TOKEN/$kver/initrd.img-$kver
EOF
find "$esp_stage" -exec touch -d "@$SDE" {} +
# mcopy -s copies the tree; -m keeps mtimes; -Q stops at the first error.
mcopy -i "$esp" -s -m -Q "$esp_stage"/* ::/
mdir -i "$esp" -/ :: > "$workdir/esp.list"

# ---- 4. GPT disk: partition table, ESP copied in ----------------------------------------------
phase disk
raw=$workdir/disk.raw
rm -f "$raw"
truncate -s "${DISK_MIB}M" "$raw"
sfdisk --quiet --no-reread --no-tell-kernel "$raw" <<EOF
label: gpt
label-id: $LABEL_ID
unit: sectors
first-lba: 2048

start=$((ESP_START_MIB * 2048)), size=$((ESP_SIZE_MIB * 2048)), type=$ESP_TYPE, uuid=$ESP_UUID, name="$ESP_NAME"
start=$((ROOT_START_MIB * 2048)), size=$((ROOT_SIZE_MIB * 2048)), type=$ROOT_TYPE, uuid=$ROOT_UUID, name="$ROOT_NAME"
EOF
sfdisk --dump "$raw" > "$workdir/partitions.txt"
# sfdisk takes any GUID as a type: check the names it resolves them to. (OVMF boots from any FAT
# partition, so a wrong ESP type only shows later, when bootctl/kernel-install refuse the ESP.)
sfdisk --list --output Device,Type "$raw" > "$workdir/partition-types.txt"
if ! grep -q 'raw1 *EFI System$' "$workdir/partition-types.txt" ||
   ! grep -q 'raw2 *Linux root (x86-64)$' "$workdir/partition-types.txt"; then
  echo "unexpected partition types:" >&2; cat "$workdir/partition-types.txt" >&2; exit 1
fi
dd if="$esp" of="$raw" bs=1M seek="$ESP_START_MIB" conv=notrunc,sparse status=none

# ---- 5. root ext4, made from the tree straight into its partition ------------------------------
# mkfs.ext4 -E offset writes the filesystem inside the disk file at the partition's byte offset
# (no separate root.img + dd: saves ~10 s of copying and 0.5 GB of scratch space), sized exactly to
# the partition. hash_seed fixed for reproducibility; E2FSPROGS_FAKE_TIME fixes its own timestamps.
phase rootfs-ext4
mkfs.ext4 -q -F -L "$ROOT_FS_LABEL" -U "$ROOT_FS_UUID" \
  -E offset=$((ROOT_START_MIB * 1048576)),hash_seed="$ROOT_FS_UUID",lazy_itable_init=1,lazy_journal_init=1 \
  -d "$rootfs" "$raw" "${ROOT_SIZE_MIB}M"
[ "$(stat -c %s "$raw")" -eq $((DISK_MIB * 1048576)) ] || { echo "disk size changed" >&2; exit 1; }
# Check it in place: libext2fs takes "FILE?offset=BYTES" as a device name (no loop device).
e2fsck -fn "$raw?offset=$((ROOT_START_MIB * 1048576))" > "$workdir/e2fsck.log" 2>&1 ||
  { cat "$workdir/e2fsck.log" >&2; exit 1; }

# ---- 6. qcow2 --------------------------------------------------------------------------------
phase qcow2
mkdir -p "$(dirname "$output")"
rm -f "$output"
qemu-img convert -f raw -O qcow2 -o compat=1.1 "$raw" "$output"
cp "$workdir/manifest" "${output%.qcow2}.manifest"
# The harness resolves a VM's packages against exactly what the image has (apt's Dir::State::status).
cp "$workdir/dpkg-status" "${output%.qcow2}.dpkg-status"
(cd "$(dirname "$output")" && sha256sum "$(basename "$output")") > "${output%.qcow2}.sha256"
{
  echo "rootfs-tree $tree_digest"
  echo "esp $(sha256sum < "$esp" | cut -d' ' -f1)"
  echo "kernel $kver"
} > "${output%.qcow2}.digests"
phase_end

awk -v a="$t_start" -v b="$(date +%s.%N)" -v k="$kver" -v o="$output" -v s="$(du -h "$output" | cut -f1)" -v d="$DISK_MIB" \
  'BEGIN { printf "total: %.2f s; kernel %s; %s (%s on disk, virtual %s MiB)\n", b - a, k, o, s, d }' >&2
