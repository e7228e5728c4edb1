#!/usr/bin/env bash
# Installs Debian's CUDA driver library (libcuda1, from contrib/non-free) when
# missing, and lays out target/cuda-driver/lib64/libcuda.so for cust's build
# script (CUDA_LIBRARY_PATH). Needs root on Debian (bookworm or later).
#
# The contrib and non-free components are added to the Debian sources this
# machine already uses (same URIs, suites and keys), so the script works
# behind whatever mirror or proxy the machine is configured with.
set -euo pipefail
cd "$(dirname "$0")/.."

find_lib() {
    ls /usr/lib/x86_64-linux-gnu/nvidia/current/libcuda.so 2>/dev/null ||
        ls /usr/lib/x86_64-linux-gnu/libcuda.so.1 2>/dev/null || true
}

# Writes, for each enabled Debian entry of the apt sources (suites named after
# this release: bookworm, bookworm-updates, bookworm-security, ...), the same
# entry with the components it lacks among contrib, non-free and
# non-free-firmware. Deb822 stanzas go to a .sources file, one-line entries
# to a .list file; nothing is written when every entry has them already.
add_components() {
    local codename extra out_sources out_list
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
    if [ -z "$codename" ]; then
        echo "install-cuda-driver: no VERSION_CODENAME in /etc/os-release" >&2
        return 1
    fi
    extra="contrib non-free non-free-firmware"
    out_sources=/etc/apt/sources.list.d/servegate-non-free.sources
    out_list=/etc/apt/sources.list.d/servegate-non-free.list
    rm -f "$out_sources" "$out_list"

    local deb822=() oneline=() f
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] && deb822+=("$f")
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] && oneline+=("$f")
    done

    local stanzas="" lines=""
    if [ ${#deb822[@]} -gt 0 ]; then
        # Stanzas are separated by blank lines; a field continues on lines
        # that start with a space (an inline Signed-By key, for one).
        stanzas=$(awk -v codename="$codename" -v extra="$extra" '
            function flush(   n, i, s, keep, have, add, c, comps) {
                if (types != "" && uris != "" && enabled != "no" && types ~ /(^| )deb( |$)/) {
                    n = split(suites, s, " ")
                    keep = n > 0
                    for (i = 1; i <= n; i++)
                        if (s[i] != codename && index(s[i], codename "-") != 1) keep = 0
                    split(components, comps, " ")
                    for (c in comps) have[comps[c]] = 1
                    add = ""
                    n = split(extra, s, " ")
                    for (i = 1; i <= n; i++) if (!(s[i] in have)) add = add (add == "" ? "" : " ") s[i]
                    if (keep && add != "") {
                        printf "Types: deb\nURIs: %s\nSuites: %s\nComponents: %s\n", uris, suites, add
                        if (signed != "") printf "%s", signed
                        if (arch != "") printf "Architectures: %s\n", arch
                        printf "\n"
                    }
                }
                types = uris = suites = components = signed = arch = enabled = field = ""
            }
            /^[ \t]*#/ { next }
            /^[ \t]*$/ { flush(); next }
            /^[ \t]/ { if (field == "signed-by") signed = signed $0 "\n"; next }
            {
                name = tolower(substr($0, 1, index($0, ":") - 1))
                value = substr($0, index($0, ":") + 1)
                gsub(/^[ \t]+|[ \t]+$/, "", value)
                field = name
                if (name == "types") types = value
                else if (name == "uris") uris = value
                else if (name == "suites") suites = value
                else if (name == "components") components = value
                else if (name == "architectures") arch = value
                else if (name == "enabled") enabled = tolower(value)
                else if (name == "signed-by") signed = "Signed-By: " value "\n"
            }
            END { flush() }
        ' < <(for f in "${deb822[@]}"; do cat "$f"; echo; done))
    fi
    if [ ${#oneline[@]} -gt 0 ]; then
        # deb [options] URI SUITE COMPONENT...
        lines=$(awk -v codename="$codename" -v extra="$extra" '
            /^[ \t]*deb[ \t]/ {
                i = 2; opts = ""
                if ($2 ~ /^\[/) {
                    while (i <= NF && $i !~ /\]$/) { opts = opts " " $i; i++ }
                    opts = opts " " $i; i++
                }
                uri = $i; suite = $(i + 1)
                if (suite != codename && index(suite, codename "-") != 1) next
                delete have
                for (j = i + 2; j <= NF && $j !~ /^#/; j++) have[$j] = 1
                add = ""
                n = split(extra, s, " ")
                for (k = 1; k <= n; k++) if (!(s[k] in have)) add = add " " s[k]
                if (add != "") print "deb" opts " " uri " " suite add
            }
        ' "${oneline[@]}")
    fi
    if [ -z "$stanzas" ] && [ -z "$lines" ]; then
        echo "install-cuda-driver: the Debian sources have contrib and non-free already"
        return 0
    fi
    if [ -n "$stanzas" ]; then
        printf '%s\n' "$stanzas" >"$out_sources"
        echo "install-cuda-driver: wrote $out_sources"
    fi
    if [ -n "$lines" ]; then
        printf '%s\n' "$lines" >"$out_list"
        echo "install-cuda-driver: wrote $out_list"
    fi
}

lib=$(find_lib)
if [ -z "$lib" ]; then
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libcuda1 >/dev/null 2>&1; then
        add_components
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libcuda1 >/dev/null
    fi
    lib=$(find_lib)
    if [ -z "$lib" ]; then
        echo "install-cuda-driver: libcuda1 is installed but libcuda.so was not found" >&2
        exit 1
    fi
fi
mkdir -p target/cuda-driver/lib64
ln -sf "$lib" target/cuda-driver/lib64/libcuda.so
echo "libcuda: $lib"
