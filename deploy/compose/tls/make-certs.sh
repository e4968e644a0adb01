#!/bin/sh
# The certificates of the TLS compose demo (deploy/docker-compose.tls.yml), made at `up` by
# its tls-certs service into the shared `tls` volume: a demo CA (ca.crt) and a certificate for
# the exporter (exporter.crt, exporter.key) valid for the names Prometheus, Alertmanager and
# your browser use: exporter, localhost and 127.0.0.1. The CA's key is deleted once it has
# signed, so nothing else can be issued under it. Existing files are kept until they expire.
#
#   sh deploy/compose/tls/make-certs.sh DIR     (needs openssl; tests/ runs it too)
#
# DEMO ONLY: in production the certificate comes from your CA, e.g. cert-manager.
set -eu

dir=${1:?usage: make-certs.sh DIR}
mkdir -p "$dir"
cd "$dir"
if [ -s exporter.crt ] && [ -s exporter.key ] && [ -s ca.crt ] \
    && openssl x509 -checkend 86400 -noout -in exporter.crt >/dev/null; then
    exit 0
fi

umask 077
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 400 \
    -subj "/CN=boomi-listener-exporter demo CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout "$work/ca.key" -out "$work/ca.crt" 2>/dev/null
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -subj "/CN=exporter" -keyout "$work/exporter.key" -out "$work/exporter.csr" 2>/dev/null
cat > "$work/extensions.cnf" <<'EXTENSIONS'
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:exporter, DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EXTENSIONS
openssl x509 -req -in "$work/exporter.csr" -CA "$work/ca.crt" -CAkey "$work/ca.key" \
    -CAcreateserial -days 365 -extfile "$work/extensions.cnf" \
    -out "$work/exporter.crt" 2>/dev/null

# Certificates for everyone; the key for the exporter's user (10001) only.
mv "$work/ca.crt" "$work/exporter.crt" "$work/exporter.key" .
chmod 644 ca.crt exporter.crt
chmod 600 exporter.key
if [ "$(id -u)" = 0 ]; then
    chown 10001:10001 exporter.key
fi
