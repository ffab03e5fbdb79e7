#!/bin/bash
# The module's parts import one another one way only (TAP; run by the
# Makefile's `unit` target).
#
# A part is memsess_NAME.c with its header memsess_NAME.h; mod_memsess.c
# and mod_memsess.h are the module's glue.  Part A imports part B when A's
# file or header includes memsess_B.h.  The imports must form no circle:
# the checker orchestrates the parts, and a part that needs something of a
# part above it is handed a callback or returns a result (mod_memsess.h,
# "Who calls whom").  Also fails when a part's .c includes mod_memsess.h
# (the glue's header: every part's at once).
#
# When the objects are built (.libs/*.o), the calls are checked too: the
# symbols each object takes from another (nm), with the module record
# memsess_module (data, not a call: APLOG_USE_MODULE) left out.
set -u
shopt -s nullglob
cd "$(dirname "$0")/../.." || exit 1

n=0
fail=0
check() {   # check DESCRIPTION STATUS [DETAILS]
    n=$((n + 1))
    if [ "$2" -eq 0 ]; then
        echo "ok $n - $1"
    else
        echo "not ok $n - $1"
        [ -n "${3:-}" ] && printf '%s\n' "$3" | sed 's/^/# /'
        fail=1
    fi
}

echo "1..4"

# 1. every part's .c includes only part headers, never the glue's
glue=$(grep -l '^#include "mod_memsess.h"' memsess_*.c 2>/dev/null)
check "no part includes mod_memsess.h (the glue's)" "$([ -z "$glue" ]; echo $?)" "$glue"

# 2. every included memsess_*.h exists
missing=""
edges=$(awk 'FNR == 1 { f = FILENAME; sub(/\.[ch]$/, "", f) }
            /^#include "memsess_[a-z_]*\.h"/ {
                h = $2; gsub(/"/, "", h); p = h; sub(/\.h$/, "", p); print f, p, h
            }' mod_memsess.c mod_memsess.h memsess_*.c memsess_*.h)
while read -r _ _ h; do
    [ -z "$h" ] || [ -e "$h" ] || missing="$missing $h"
done <<< "$edges"
check "every included part header exists" "$([ -z "$missing" ]; echo $?)" "missing:$missing"

# 3. the imports form no circle (tsort names one when they do)
loop=$(awk '$1 != $2 { print $1, $2 }' <<< "$edges" | tsort 2>&1 >/dev/null)
check "the parts' imports form no circle" "$([ -z "$loop" ]; echo $?)" "$loop"

# 4. the calls between the built objects form no circle
if ls .libs/*.o >/dev/null 2>&1 && command -v nm >/dev/null; then
    calls=$(
        { nm -A --defined-only -g .libs/*.o | awk 'NF == 3 { print "D", $3, $1 }'
          nm -A -u .libs/*.o | awk '{ print "U", $NF, $1 }'; } |
        awk '{ f = $3; sub(/:.*/, "", f); sub(/.*\//, "", f); sub(/\.o$/, "", f) }
             $1 == "D" { def[$2] = f; next }
             $2 != "memsess_module" && ($2 in def) && def[$2] != f { print f, def[$2] }' |
        sort -u)
    loop=$(tsort <<< "$calls" 2>&1 >/dev/null)
    check "the calls between the objects form no circle" "$([ -z "$loop" ]; echo $?)" "$loop"
else
    n=$((n + 1))
    echo "ok $n # skip the objects are not built"
fi
exit "$fail"
