#!/bin/sh
# Regenerates the internal mutual-TLS test material (internal-*.pem): a CA of its own, the
# credentials service's server certificate and a client certificate for the calling services,
# plus a client certificate from another CA that the credentials service must refuse. Run once by
# hand; the files are committed and the CA keys thrown away, as in generate.sh.
set -eu
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat > "$tmp/ext.cnf" <<CNF
[ca_ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
[server_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost,IP:127.0.0.1,DNS:credentials
[client_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
CNF
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"; }
ca() { # $1 key, $2 cert, $3 name
  key "$1"
  openssl req -new -x509 -key "$1" -subj "/CN=$3" -days 10950 -out "$2" -config "$tmp/ext.cnf" -extensions ca_ext
}
leaf() { # $1 key, $2 cert, $3 name, $4 extensions, $5 CA cert, $6 CA key
  key "$1"
  openssl req -new -key "$1" -subj "/CN=$3" -out "$tmp/leaf.csr"
  openssl x509 -req -in "$tmp/leaf.csr" -CA "$5" -CAkey "$6" -CAcreateserial -days 10950 -out "$2" -extfile "$tmp/ext.cnf" -extensions "$4"
}
ca "$tmp/ca-key.pem" internal-ca.pem "Campus Relay Internal Test CA"
leaf internal-server-key.pem internal-server.pem relay-credentials server_ext internal-ca.pem "$tmp/ca-key.pem"
leaf internal-client-key.pem internal-client.pem relay-smtp-sender client_ext internal-ca.pem "$tmp/ca-key.pem"
ca "$tmp/other-key.pem" "$tmp/other.pem" "Some Other CA"
leaf internal-stranger-key.pem internal-stranger.pem relay-smtp-sender client_ext "$tmp/other.pem" "$tmp/other-key.pem"
rm -f internal-ca.srl
chmod 644 ./internal-*.pem
