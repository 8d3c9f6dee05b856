#!/bin/sh
# Installs the Debian packages listed in packages.txt that are missing, without
# letting their maintainer scripts start daemons on the host: the lab starts
# its own copies inside network namespaces, with its own configuration.
# Idempotent: a second run installs nothing.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
packages=$(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$here/packages.txt")

missing=""
for p in $packages; do
	if [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" != "installed" ]; then
		missing="$missing $p"
	fi
done
if [ -z "$missing" ]; then
	echo "lab packages: all installed"
	exit 0
fi
echo "lab packages: installing$missing"

if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps.sh: run as root (apt-get install needs it)" >&2
	exit 1
fi

# policy-rc.d answering 101 forbids invoke-rc.d (and so the packages'
# postinst scripts) to start services. Keep an existing one untouched.
policy=/usr/sbin/policy-rc.d
own_policy=""
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\nexit 101\n' >"$policy"
	chmod 755 "$policy"
	own_policy=1
fi
cleanup() { if [ -n "$own_policy" ]; then rm -f "$policy"; fi; }
trap cleanup EXIT INT TERM

export DEBIAN_FRONTEND=noninteractive
# The package lists may be missing on a fresh machine.
if ! apt-get install -y --no-install-recommends $missing; then
	apt-get update
	apt-get install -y --no-install-recommends $missing
fi

# The services of the packages just installed must not start with the host
# either: the lab never uses the host's copies. Packages that were already
# installed keep whatever the host decided for them.
for pair in openssh-server:ssh rsync:rsync nginx:nginx rsyslog:rsyslog rpcbind:rpcbind \
	snmpd:snmpd openipmi:openipmi; do
	pkg=${pair%%:*}
	svc=${pair#*:}
	case " $missing " in *" $pkg "*) ;; *) continue ;; esac
	if [ -d /run/systemd/system ]; then
		systemctl disable --now "$svc" >/dev/null 2>&1 || true
	elif [ -x "/etc/init.d/$svc" ]; then
		update-rc.d "$svc" disable >/dev/null 2>&1 || true
	fi
done
echo "lab packages: done"
