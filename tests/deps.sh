#!/bin/sh
# deps.sh PACKAGE... -- make sure these Debian packages are installed.
# As root, installs the missing ones with apt-get (non-interactive);
# otherwise prints the exact command to run and fails.
missing=""
for p in "$@"; do
    st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)
    case "$st" in
        *"install ok installed"*) ;;
        *) missing="$missing $p" ;;
    esac
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "missing Debian packages:$missing" >&2
    echo "run: sudo apt-get install -y$missing" >&2
    exit 1
fi
echo "installing:$missing"
apt-get update -q || exit 1
DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing || exit 1
