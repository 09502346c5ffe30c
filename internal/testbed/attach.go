package testbed

import (
	"fmt"
	"os"
	"testing"
)

// Attach returns a bed for an ocserv that runs elsewhere, for example as a
// systemd service in a container (package nspawn) whose network namespace
// is serverNS: the bed starts no ocserv and writes no configuration, it
// only makes real openconnect clients, each in a namespace of its own with
// a veth link into serverNS (the server's end is 10.98.<k>.1, which ocserv
// must listen on), connecting to port and trusting pin
// ("pin-sha256:…" of the server's certificate: see CertPin). users are the
// accounts the server knows, for Password. Clients, their namespaces and
// their links are removed when the test ends.
func Attach(t *testing.T, serverNS string, port int, pin string, users []User) *Bed {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("testbed.Attach needs root")
	}
	id := randHex(3)
	b := &Bed{
		t:        t,
		id:       id,
		serverNS: serverNS,
		port:     port,
		pin:      pin,
		users:    map[string]User{},
	}
	for _, u := range users {
		b.users[u.Name] = u
	}
	t.Cleanup(b.cleanup)
	dir, err := os.MkdirTemp("", namePrefix+id+"-")
	if err != nil {
		t.Fatalf("testbed: %v", err)
	}
	b.dir = dir
	return b
}

// CertPin is openconnect's --servercert pin of a PEM certificate file.
func CertPin(certPath string) (string, error) {
	pin, err := spkiPin(certPath)
	if err != nil {
		return "", fmt.Errorf("testbed: %w", err)
	}
	return pin, nil
}
