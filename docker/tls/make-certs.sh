#!/usr/bin/env bash
# A local certificate authority and a server certificate for EMQX's MQTT-over-TLS listener (8883), for
# trying the deployment; in production put your own ca.pem, server.pem and server.key here instead.
#
#   bash docker/tls/make-certs.sh [OUT_DIR] [HOST...]
#
# OUT_DIR defaults to this folder (docker/tls, mounted into EMQX as /opt/emqx/etc/certs/dmp; its
# certificates and keys are git-ignored). The server certificate is valid for emqx, localhost,
# 127.0.0.1 and every HOST given (the names devices connect to). Existing files are kept: delete them
# to make new ones. A device then connects with the CA, e.g.
#   mosquitto_pub --cafile docker/tls/ca.pem -h localhost -p 8883 -u DEVICE -P TOKEN -t devices/DEVICE/telemetry -m '{…}'
set -euo pipefail

out="${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}"
shift || true
command -v openssl >/dev/null || { echo "make-certs: openssl is needed (apt-get install openssl)" >&2; exit 1; }
mkdir -p "$out"
cd "$out"

if [[ -f ca.pem && -f server.pem && -f server.key ]]; then
  echo "make-certs: $out already has ca.pem, server.pem and server.key (delete them to make new ones)"
  exit 0
fi

san="DNS:emqx,DNS:localhost,IP:127.0.0.1"
for host in "$@"; do
  if [[ "$host" =~ ^[0-9.]+$ || "$host" == *:* ]]; then san+=",IP:$host"; else san+=",DNS:$host"; fi
done

umask 077
openssl req -x509 -newkey rsa:3072 -sha256 -days 825 -nodes -subj "/CN=DMP local CA" \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
  -keyout ca.key -out ca.pem 2>/dev/null
openssl req -newkey rsa:3072 -sha256 -nodes -subj "/CN=emqx" -keyout server.key -out server.csr 2>/dev/null
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 825 -sha256 \
  -extfile <(printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n' "$san") \
  -out server.pem 2>/dev/null
rm -f server.csr ca.srl
# EMQX runs as uid 1000 in its container and must read the key; the CA key stays private to you.
chmod 644 ca.pem server.pem server.key
echo "make-certs: wrote $out/ca.pem, server.pem, server.key (for $san); CA key: $out/ca.key"
