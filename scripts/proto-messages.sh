#!/bin/sh
# SPDX-License-Identifier: MIT
# proto-messages.sh PROTO OUTDIR - the C code of PROTO's messages
# (OUTDIR/NAME.pb-c.c and .h) by protoc-c, without its service block: the C
# side routes calls by their method paths (src/common/rpc.c), and protoc-c's
# service stubs would not compile (a method named Register is a C keyword).
set -eu
proto=$1
out=$2
name=$(basename "$proto")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sed '/^service /,/^}/d' "$proto" > "$tmp/$name"
protoc-c --proto_path="$tmp" --c_out="$tmp" "$tmp/$name"
base=${name%.proto}
mv "$tmp/$base.pb-c.h" "$out/$base.pb-c.h"
mv "$tmp/$base.pb-c.c" "$out/$base.pb-c.c"
