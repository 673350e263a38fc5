#!/usr/bin/env bash
# Build the Debian package (dpkg-buildpackage -us -uc -b) from a copy of the
# tree, unpack it into a scratch root (dpkg -x), run the packaged `stamp` from
# there on loopback, and verify the packaged systemd unit against that root.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

mkdir "$work/src"
git ls-files -z | xargs -0 tar -cf - | tar -xf - -C "$work/src"
(cd "$work/src" && dpkg-buildpackage -us -uc -b >"$work/build.log" 2>&1) || { tail -n 40 "$work/build.log"; exit 1; }
deb=$(ls "$work"/stamp_*.deb)
echo "built $(basename "$deb")"
dpkg-deb -c "$deb" | awk '{print $6}' | grep -E "^\./(usr/bin/stamp|usr/share/lua/5.4/stamp/(init|ops)\.lua|usr/lib/.*/lua/5.4/stamp/core\.so|lib/systemd/system/stamp-reflector\.service|usr/share/man/man1/stamp\.1\.gz|etc/stamp/reflector\.lua)$" \
  | sort | tee "$work/contents"
[ "$(wc -l <"$work/contents")" = 7 ] || { echo "the package misses one of: command, modules, binding, unit, man page, config"; exit 1; }

root="$work/root"
dpkg -x "$deb" "$root"
multi=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
export LUA_PATH="$root/usr/share/lua/5.4/?.lua;$root/usr/share/lua/5.4/?/init.lua;;"
export LUA_CPATH="$root/usr/lib/$multi/lua/5.4/?.so;;"
port=$((20000 + RANDOM % 10000))
"$root/usr/bin/stamp" -i --local-addr 127.0.0.1 --local-port "$port" >"$work/reflector.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 50); do grep -q listening "$work/reflector.log" && break; sleep 0.1; done
"$root/usr/bin/stamp" -r 127.0.0.1 -p "$port" -o 0 -c 5 -d 5 | tee "$work/sender.log" | grep -E "^Packets (sent|received)"
grep -q "^Packets received: 5" "$work/sender.log"
for m in stamp.core stamp.ops; do # the packaged modules, not another copy
  case $(lua5.4 -e "print(package.searchpath('$m', '$m' == 'stamp.core' and package.cpath or package.path))") in
    "$root"/*) ;; *) echo "$m is not taken from the package"; exit 1 ;;
  esac
done
man -l "$root/usr/share/man/man1/stamp.1.gz" >/dev/null

# libstamp for C programs: the header, the library on the linker path and stamp.pc
printf '#include <stamp.h>\n#include <stdio.h>\nint main(void) { stamp_ee_t ee; stamp_ee_from_ns(&ee, 1000.0); printf("scale %%u\\n", ee.scale); return 0; }\n' >"$work/p.c"
pc() { PKG_CONFIG_SYSROOT_DIR="$root" PKG_CONFIG_PATH="$root/usr/lib/$multi/pkgconfig" pkg-config "$@"; }
# shellcheck disable=SC2046
cc -o "$work/p" "$work/p.c" $(pc --cflags --libs stamp)
[ "$(LD_LIBRARY_PATH="$root/usr/lib/$multi" "$work/p")" = "scale 5" ] || { echo "libstamp from the package does not work"; exit 1; }
echo "libstamp: a C program builds with pkg-config --cflags --libs stamp from the package and runs"

# systemd-analyze verify against the scratch root: the unit, the command it starts, and
# the system's own units it refers to (sysinit.target ...) copied next to them
mkdir -p "$root/usr/lib/systemd"
cp -r /usr/lib/systemd/system "$root/usr/lib/systemd/"
mkdir -p "$root/bin" && cp /bin/kill "$root/bin/"
systemd-analyze verify --root="$root" --man=no /lib/systemd/system/stamp-reflector.service
echo "systemd-analyze verify: stamp-reflector.service OK"
