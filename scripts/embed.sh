#!/bin/sh
# embed.sh SYMBOL FILE - print a C source file that holds FILE's bytes as
#   const unsigned char SYMBOL[]  (followed by a NUL, not counted)
#   const size_t SYMBOL_len
# The Makefile uses it to build src/master/dashboard.html into the master:
# the page stays a readable file, and the binary needs nothing at run time.
# Only POSIX sh and od.
set -eu
sym=$1
file=$2
printf '/* Generated from %s by scripts/embed.sh: do not edit. */\n' "$file"
printf '#include "master/dashboard.h"\n\n'
printf 'const unsigned char %s[] = {\n' "$sym"
od -An -v -tx1 "$file" | sed -e 's/^ *//' -e 's/ *$//' -e '/^$/d' -e 's/ \{1,\}/, 0x/g' \
	-e 's/^/\t0x/' -e 's/$/,/'
printf '\t0x00\n};\n'
printf 'const size_t %s_len = sizeof(%s) - 1;\n' "$sym" "$sym"
