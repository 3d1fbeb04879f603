#!/usr/bin/env bash
# The main job, end to end, with no server: snapshot a directory, push it to
# an encrypted file:// remote, restore it on a second "machine" (another
# local store), and check the copy is identical and that the remote holds
# no plaintext. Run it with `npm run demo` (or
# `bash examples/demo.sh` after `npm run build`).
#
# Everything happens in a temporary directory that is removed at the end
# (set KEEP=1 to keep it).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ ! -f "$root/dist/cli/main.js" ]; then
  echo "demo: building cairn (npm run build)..." >&2
  (cd "$root" && npm run --silent build)
fi
cairn() { node "$root/dist/cli/main.js" "$@"; }

work="$(mktemp -d "${TMPDIR:-/tmp}/cairn-demo.XXXXXX")"
cleanup() { if [ "${KEEP:-0}" = 1 ]; then echo "demo: kept $work"; else rm -rf "$work"; fi; }
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "1. A directory to protect: small files, nested folders, a 32 MiB file, a symlink, odd names"
src="$work/photos"
mkdir -p "$src/2024/summer" "$src/2025/winter" "$src/empty folder"
for i in $(seq 1 300); do echo "note $i: $(date +%s%N)" > "$src/2024/summer/note-$i.txt"; done
for i in $(seq 1 100); do head -c $((RANDOM * 4)) /dev/urandom > "$src/2025/winter/img-$i.raw"; done
head -c $((32 * 1024 * 1024)) /dev/urandom > "$src/video.bin"
printf 'caf\xc3\xa9 with spaces\n' > "$src/2025/winter/café menu.txt"
touch "$src/empty file"
ln -s 2024/summer "$src/latest"
chmod 755 "$src/2024/summer/note-1.txt"
echo "$(find "$src" | wc -l) entries, $(du -sh "$src" | cut -f1)"

step "2. Machine A: cairn init --remote file://$work/remote --encrypt"
export CAIRN_DIR="$work/machine-a/.cairn"
# The remote's password. Here from the environment so the demo runs unattended;
# without CAIRN_PASSWORD (or --password-file) cairn asks for it on the terminal.
export CAIRN_PASSWORD="demo password, use a better one"
cairn init --remote "file://$work/remote" --encrypt
cairn key list

step "3. Machine A: cairn snapshot $src --ref snapshots/photos"
cairn snapshot "$src" --ref snapshots/photos

step "4. Machine A: cairn push"
cairn push

step "5. A 1% change, then a second snapshot + push uploads only what changed"
echo "edited" >> "$src/2024/summer/note-7.txt"
head -c 1000 /dev/urandom | dd of="$src/video.bin" bs=1 seek=1000000 conv=notrunc status=none
cairn snapshot "$src" --ref snapshots/photos
cairn push

step "6. The remote holds only ciphertext: no file name, no content, no snapshot hash"
marker="$(head -c 40 "$src/2024/summer/note-1.txt")"
root_hex="$(cairn ref get snapshots/photos | cut -d: -f2)"
if grep -rqaF -e "$marker" -e "note-1.txt" -e "$root_hex" "$work/remote"; then echo "demo: plaintext found in the remote" >&2; exit 1; fi
echo "searched $(find "$work/remote" -type f | wc -l) files of the remote for a file's text, a file name and the snapshot hash: none found"

step "7. Machine B: cairn init --encrypt (joins the remote with its password), cairn pull, cairn restore snapshots/photos"
export CAIRN_DIR="$work/machine-b/.cairn"
cairn init --remote "file://$work/remote" --encrypt
cairn pull
cairn restore snapshots/photos "$work/restored"

step "8. Identical? (diff -r, and a fresh snapshot of the copy has the same root hash)"
diff -r --no-dereference "$src" "$work/restored"
want="$(CAIRN_DIR="$work/machine-a/.cairn" cairn ref get snapshots/photos)"
got="$(cairn snapshot -q "$work/restored")"
[ "$want" = "$got" ] || { echo "demo: root hashes differ: $want vs $got" >&2; exit 1; }
echo "identical: $got"

step "9. cairn verify (re-hashes every object, local and remote)"
cairn verify

step "Done"
echo "Snapshot $want was pushed, encrypted, to file://$work/remote and restored byte for byte on a second store."
echo "Try the same against S3 or MinIO: see docs/cli.md."
