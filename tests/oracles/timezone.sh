# Time zone oracle, every input in one root: cloud-init 22.4.2's timezone module
# (distros/__init__.py _find_tz_file) accepts a zone iff /usr/share/zoneinfo/ZONE is a file, then
# links /etc/localtime to it; glibc reads that file as TZif. Both are asked of the release's tzdata.
#
# in:  <k>/zone
# out: <k>/file.* (test -f), <k>/magic.* (the file's first four bytes: TZif)
set -euo pipefail
for dir in "$1"/*/; do
  k=$(basename "$dir")
  (
    source /run/kiln-drivers/lib.sh "$1/$k" "$2/$k"
    file=/usr/share/zoneinfo/$(cat "$in/zone")
    record file test -f "$file"
    record magic head -c 4 "$file"
  )
done
