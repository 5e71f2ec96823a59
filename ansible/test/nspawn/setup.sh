#!/bin/sh
# Builds and boots the Debian 12 test host of the real apply (README.md). Run as root; only
# loopback and a Unix socket connect it to this machine. Not part of CI.
set -eu
ROOT=/var/lib/machines/pu-deb12
KEYS=/root/.pu-nspawn
SOCKETS=/run/pu-nspawn-proxy
HERE="$(cd "$(dirname "$0")" && pwd)"

apt-get install -y -qq --no-install-recommends debootstrap systemd-container socat
mkdir -p "$KEYS" "$SOCKETS"
[ -f "$KEYS/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -f "$KEYS/id_ed25519"
if [ ! -d "$ROOT.pristine" ]; then
  debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,python3,python3-apt,ca-certificates,iproute2,procps,curl,openssh-server,sudo,socat \
    bookworm "$ROOT.pristine" http://deb.debian.org/debian
  echo pu-deb12 > "$ROOT.pristine/etc/hostname"
  printf '127.0.0.1 localhost pu-deb12\n' > "$ROOT.pristine/etc/hosts"
  install -d -m 700 "$ROOT.pristine/root/.ssh"
  install -m 600 "$KEYS/id_ed25519.pub" "$ROOT.pristine/root/.ssh/authorized_keys"
  printf 'Port 22\nListenAddress 127.0.0.1\nPasswordAuthentication no\nPermitRootLogin prohibit-password\n' > "$ROOT.pristine/etc/ssh/sshd_config.d/10-local.conf"
  # apt and npm reach the Debian archive and the npm registry through the host's proxy socket.
  printf 'Acquire::http::Proxy "http://127.0.0.1:3128";\nAcquire::https::Proxy "http://127.0.0.1:3128";\n' > "$ROOT.pristine/etc/apt/apt.conf.d/90pu-proxy"
  cat > "$ROOT.pristine/etc/systemd/system/pu-proxy.service" <<'UNIT'
[Unit]
Description=Forward 127.0.0.1:3128 to the host's proxy socket (test host only)
[Service]
ExecStart=/usr/bin/socat TCP-LISTEN:3128,bind=127.0.0.1,fork,reuseaddr UNIX-CONNECT:/run/pu-nspawn-proxy/proxy.sock
Restart=always
[Install]
WantedBy=multi-user.target
UNIT
  cat > "$ROOT.pristine/etc/systemd/system/pu-ssh-socket.service" <<'UNIT'
[Unit]
Description=Expose sshd on a socket shared with the host (test host only)
After=ssh.service
[Service]
ExecStart=/usr/bin/socat UNIX-LISTEN:/run/pu-nspawn-proxy/ssh.sock,fork,unlink-early,mode=600 TCP:127.0.0.1:22
Restart=always
[Install]
WantedBy=multi-user.target
UNIT
  ln -sf /etc/systemd/system/pu-proxy.service "$ROOT.pristine/etc/systemd/system/multi-user.target.wants/"
  ln -sf /etc/systemd/system/pu-ssh-socket.service "$ROOT.pristine/etc/systemd/system/multi-user.target.wants/"
  # This machine's TLS egress CA, which the registries' certificates chain to here.
  cp /usr/local/share/ca-certificates/*.crt "$ROOT.pristine/usr/local/share/ca-certificates/" 2>/dev/null || true
  chroot "$ROOT.pristine" update-ca-certificates >/dev/null
fi
rm -rf "$ROOT" && cp -a "$ROOT.pristine" "$ROOT"

# The host side: the proxy (Debian archive and npm registry only) and nspawn's runtime directory.
[ -S "$SOCKETS/proxy.sock" ] || (nohup node "$HERE/proxy.mjs" "$SOCKETS/proxy.sock" > /tmp/pu-proxy.log 2>&1 &)
mountpoint -q /run/systemd/nspawn || { mkdir -p /run/systemd/nspawn; mount -t tmpfs -o mode=0755,size=16m tmpfs /run/systemd/nspawn; }
# PID 1 here is not systemd: no machined registration, no scope unit.
nohup systemd-nspawn -D "$ROOT" --boot --register=no --keep-unit --machine=pu-deb12 \
  --private-network --bind="$SOCKETS" --console=passive > /tmp/pu-nspawn.log 2>&1 &
for i in $(seq 1 60); do [ -S "$SOCKETS/ssh.sock" ] && break; sleep 1; done
echo "pu-deb12 is up: ssh through $SOCKETS/ssh.sock"
