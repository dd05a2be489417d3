#!/bin/sh
# Regenerates the test TLS material. Run once by hand: the files are committed so tests never
# call openssl. Certificates start a day in the past so a runner whose clock lags still trusts
# them. The CA key is thrown away on purpose: nothing else should mint certificates with it.
set -eu
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
start=$(date -u -d '1 day ago' +%Y%m%d%H%M%SZ)
end=$(date -u -d '30 years' +%Y%m%d%H%M%SZ)

cat > "$tmp/ca.cnf" <<CNF
[ca]
default_ca = test
[test]
dir = $tmp
database = $tmp/index.txt
new_certs_dir = $tmp
serial = $tmp/serial
default_md = sha256
policy = any
copy_extensions = none
unique_subject = no
[any]
commonName = supplied
[ca_ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost,IP:127.0.0.1,DNS:smtp.test.local
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[untrusted_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost,IP:127.0.0.1
subjectKeyIdentifier = hash
CNF
: > "$tmp/index.txt"
echo 1000 > "$tmp/serial"

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"; }
csr() { openssl req -new -key "$1" -subj "/CN=$2" -out "$3"; }
sign() { # $1 csr, $2 out, $3 extensions, then how to sign
  csrf=$1 out=$2 ext=$3; shift 3
  openssl ca -batch -notext -config "$tmp/ca.cnf" -in "$csrf" -out "$out" -extensions "$ext" \
    -startdate "$start" -enddate "$end" "$@"
}

key "$tmp/ca-key.pem"
csr "$tmp/ca-key.pem" "Campus Relay Test CA" "$tmp/ca.csr"
sign "$tmp/ca.csr" ca.pem ca_ext -selfsign -keyfile "$tmp/ca-key.pem"

key server-key.pem
csr server-key.pem localhost "$tmp/server.csr"
sign "$tmp/server.csr" server.pem server_ext -cert ca.pem -keyfile "$tmp/ca-key.pem"

key untrusted-key.pem
csr untrusted-key.pem localhost "$tmp/untrusted.csr"
sign "$tmp/untrusted.csr" untrusted.pem untrusted_ext -selfsign -keyfile untrusted-key.pem

chmod 644 ./*.pem
