#!/usr/bin/env bash
# buf breaking (FILE rules) against the protos of the previous commit.
#
# To accept a deliberate break, add the trailer `Breaking-Change: <why>` to the commit
# message of the commit that makes it; this check then skips that commit.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! git rev-parse --verify --quiet HEAD~1 >/dev/null || ! git cat-file -e HEAD~1:buf.yaml 2>/dev/null; then
  echo "buf breaking: no previous commit with protos; nothing to compare"
  exit 0
fi
if git log -1 --format=%B HEAD | grep -qiE '^Breaking-Change:'; then
  echo "buf breaking: skipped, HEAD declares a deliberate break: $(git log -1 --format=%B HEAD | grep -iE '^Breaking-Change:')"
  exit 0
fi
buf breaking --against '.git#ref=HEAD~1'
echo "buf breaking: no breaking changes against HEAD~1"
