#!/usr/bin/env bash
# Generates a CA and the certificates a TLS commitlog setup needs, with the openssl CLI:
#
#   ca.pem / ca-key.pem              the CA that signs everything below
#   server.pem / server-key.pem      commitlogd --server-tls-{cert,key}-file (CN commitlog-server)
#   peer.pem / peer-key.pem          commitlogd --peer-tls-{cert,key}-file   (CN commitlog-peer)
#   root.pem / root-key.pem          client certificate, CN root   (may produce/consume)
#   nobody.pem / nobody-key.pem      client certificate, CN nobody (may do nothing)
#
# Server and peer certificates carry subjectAltNames for 127.0.0.1, ::1, localhost and
# $CERT_HOST (default: this machine's host name). All leaves are X.509 v3 with
# basicConstraints, keyUsage and extendedKeyUsage (rustls rejects v1 certificates).
# Keys are ECDSA P-256 (PKCS#8).
#
# Usage: certs/gencert.sh [out-dir]      (default certs/out; `make gencert`)
# Env:   CERT_HOST=name  CERT_DAYS=365  FORCE=1 (regenerate even if ca.pem exists)
set -euo pipefail

out="${1:-$(dirname "$0")/out}"
host="${CERT_HOST:-$(hostname 2>/dev/null || echo localhost)}"
days="${CERT_DAYS:-365}"

command -v openssl >/dev/null || { echo "gencert: openssl is not installed (apt-get install openssl)" >&2; exit 1; }
if [[ -f "$out/ca.pem" && "${FORCE:-0}" != 1 ]]; then
    echo "gencert: $out/ca.pem exists; keeping the certificates (FORCE=1 to regenerate)"
    exit 0
fi
mkdir -p "$out"
umask 077
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

# The CA. Its name is unique (a random suffix): two CAs with one subject name make a
# client certificate from the other CA fail as `DecryptError` (the server looks up
# the issuer by name, then the signature does not verify) instead of `UnknownCA`.
key "$out/ca-key.pem"
ca_id="$(openssl rand -hex 4)"
openssl req -x509 -new -key "$out/ca-key.pem" -sha256 -days "$days" \
    -subj "/O=commitlog/CN=commitlog CA $ca_id" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$out/ca.pem"

# leaf <name> <CN> <extendedKeyUsage> [subjectAltName]
leaf() {
    local name="$1" cn="$2" eku="$3" san="${4:-}"
    key "$out/$name-key.pem"
    openssl req -new -key "$out/$name-key.pem" -subj "/O=commitlog/CN=$cn" -out "$tmp/$name.csr"
    {
        echo "basicConstraints=critical,CA:FALSE"
        echo "keyUsage=critical,digitalSignature,keyEncipherment"
        echo "extendedKeyUsage=$eku"
        echo "subjectKeyIdentifier=hash"
        echo "authorityKeyIdentifier=keyid"
        [[ -n "$san" ]] && echo "subjectAltName=$san"
    } > "$tmp/$name.ext"
    openssl x509 -req -in "$tmp/$name.csr" -CA "$out/ca.pem" -CAkey "$out/ca-key.pem" \
        -CAcreateserial -CAserial "$tmp/ca.srl" -sha256 -days "$days" \
        -extfile "$tmp/$name.ext" -out "$out/$name.pem" 2>/dev/null
}

san="DNS:localhost,IP:127.0.0.1,IP:::1"
[[ "$host" != localhost ]] && san="$san,DNS:$host"
leaf server commitlog-server serverAuth "$san"
leaf peer commitlog-peer "serverAuth,clientAuth" "$san"
leaf root root clientAuth
leaf nobody nobody clientAuth
chmod 644 "$out"/*.pem
chmod 600 "$out"/*-key.pem
echo "gencert: wrote CA, server, peer, root and nobody certificates to $out (SAN $san, $days days)"
