package testbed

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// makeCerts creates a CA and a server certificate signed by it with
// certtool (the tool an ocserv operator uses), for the given server
// addresses. It returns the server's certificate and key paths and
// openconnect's pin ("pin-sha256:<base64 of the SPKI's SHA-256>").
func makeCerts(dir string, ips []string) (cert, key, pin string, err error) {
	caTmpl := filepath.Join(dir, "ca.tmpl")
	srvTmpl := filepath.Join(dir, "server.tmpl")
	caKey := filepath.Join(dir, "ca-key.pem")
	caCert := filepath.Join(dir, "ca.pem")
	key = filepath.Join(dir, "server-key.pem")
	cert = filepath.Join(dir, "server.pem")

	if err := os.WriteFile(caTmpl, []byte("cn = \"ocserv-telemetry test CA\"\nca\ncert_signing_key\nexpiration_days = 2\n"), 0o600); err != nil {
		return "", "", "", err
	}
	var st strings.Builder
	st.WriteString("cn = \"ocserv-telemetry test server\"\ndns_name = \"localhost\"\n")
	for _, a := range ips {
		fmt.Fprintf(&st, "ip_address = %q\n", a)
	}
	st.WriteString("tls_www_server\nsigning_key\nencryption_key\nexpiration_days = 2\n")
	if err := os.WriteFile(srvTmpl, []byte(st.String()), 0o600); err != nil {
		return "", "", "", err
	}
	steps := [][]string{
		{"certtool", "--generate-privkey", "--key-type=ecdsa", "--outfile", caKey},
		{"certtool", "--generate-self-signed", "--load-privkey", caKey, "--template", caTmpl, "--outfile", caCert},
		{"certtool", "--generate-privkey", "--key-type=ecdsa", "--outfile", key},
		{"certtool", "--generate-certificate", "--load-privkey", key, "--load-ca-certificate", caCert,
			"--load-ca-privkey", caKey, "--template", srvTmpl, "--outfile", cert},
	}
	for _, argv := range steps {
		if _, err := runCmd(30*time.Second, argv...); err != nil {
			return "", "", "", err
		}
	}
	pin, err = spkiPin(cert)
	return cert, key, pin, err
}

// spkiPin computes openconnect's --servercert pin of a PEM certificate.
func spkiPin(certPath string) (string, error) {
	b, err := os.ReadFile(certPath)
	if err != nil {
		return "", err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return "", fmt.Errorf("%s: no PEM block", certPath)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return "", fmt.Errorf("%s: %w", certPath, err)
	}
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return "pin-sha256:" + base64.StdEncoding.EncodeToString(sum[:]), nil
}
