# Shell oracle, every input in one root: the release's bash parses each script kiln ships
# (`bash -n`: syntax only, nothing runs).
#
# in:  <k>/script
# out: <k>/syntax.* (see lib.sh)
set -euo pipefail
for dir in "$1"/*/; do
  k=$(basename "$dir")
  (
    source /run/kiln-drivers/lib.sh "$1/$k" "$2/$k"
    record syntax bash -n "$in/script"
  )
done
