package firewall

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// What each ocserv-fw claims, read from the scripts themselves
// (testdata/ocserv-fw): the patterns they grep or match to decide what to
// delete, on --removeall and on a disconnect.
//
//   - iptables scripts (1.1.6 to 1.5.0): rules whose `iptables -S` line
//     contains "comment ocserv-fw"; chains whose line contains
//     "INPUT-ocserv-fw"; the chain FORWARD-ocserv-fw-<dev>.
//   - nftables script (1.4.2 to 1.5.0): every "table inet ocserv_*" on
//     --removeall; "table inet ocserv_<dev>" on disconnect.
//
// TestNamesOutsideOcservFwClaims checks the patterns are still in the
// scripts (so this list stays true) and that none of our names falls
// under any of them, for every device name the firewall accepts.
func TestNamesOutsideOcservFwClaims(t *testing.T) {
	scripts := map[string][]string{
		"ocserv-fw-1.1.6-iptables": {`grep "comment ${COMMENT}"`, `grep "INPUT-${COMMENT}"`, `COMMENT="ocserv-fw"`, `SEC_FORWARD_CHAIN="FORWARD-${COMMENT}-${DEVICE}"`},
		"ocserv-fw-1.3.0-iptables": {`grep "comment ${COMMENT}"`, `grep "INPUT-${COMMENT}"`, `COMMENT="ocserv-fw"`, `SEC_FORWARD_CHAIN="FORWARD-${COMMENT}-${DEVICE}"`},
		"ocserv-fw-1.5.0-nftables": {`s/^table inet \(ocserv_[^ ]*\).*/\1/p`, `TABLE="ocserv_$(echo "${DEVICE}"`},
	}
	for name, wants := range scripts {
		b, err := os.ReadFile("testdata/ocserv-fw/" + name)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range wants {
			if !strings.Contains(string(b), w) {
				t.Errorf("%s no longer holds %q: re-read what it claims", name, w)
			}
		}
	}
	nftClaim := regexp.MustCompile(`^ocserv_`)
	for _, dev := range []string{"vpns0", "vpns10", "ocserv_x", "tun-1.2", "FORWARD", "a"} {
		if ValidDevice(dev) != nil {
			t.Fatalf("fixture %q is not a device the firewall accepts", dev)
		}
		for _, o := range []Owner{{ID: 1}, {ID: 99999, UID: "0190aaaa-bbbb-7ccc-8ddd-eeeeeeeeeeee"}} {
			// Our iptables rules as iptables -S prints them.
			lines := []string{
				"-N " + mainChain(dev), "-N " + routeChain(dev),
				"-A FORWARD -i " + dev + ` -m comment --comment "` + jumpComment(o) + `" -j ` + mainChain(dev),
				"-A " + mainChain(dev) + " -m comment --comment " + Comment + " -j REJECT",
			}
			for _, l := range lines {
				if strings.Contains(l, "comment ocserv-fw") || strings.Contains(l, "INPUT-ocserv-fw") || strings.Contains(l, "FORWARD-ocserv-fw-") {
					t.Errorf("ocserv-fw's iptables scripts would claim our line %q", l)
				}
			}
		}
		if nftClaim.MatchString(TablePrefix + dev) {
			t.Errorf("ocserv-fw's nftables script would delete our table %q", TablePrefix+dev)
		}
		// Its per-device table name never equals ours either.
		if "ocserv_"+regexp.MustCompile(`[^a-zA-Z0-9_]`).ReplaceAllString(dev, "_") == TablePrefix+dev {
			t.Errorf("ocserv-fw's table for %q is ours", dev)
		}
	}
	// The control: the name earlier releases used is inside the claim,
	// which is why it was changed.
	if !nftClaim.MatchString(LegacyTablePrefix + "vpns0") {
		t.Error("the legacy name is outside ocserv-fw 1.5.0's claim: the control is wrong")
	}
}
