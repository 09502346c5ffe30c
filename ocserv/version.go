package ocserv

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
)

// Version is an ocserv/occtl release, e.g. 1.1.6. The zero Version means
// unknown; capability checks on it answer false, the safe side for features
// newer versions added.
type Version struct {
	Major, Minor, Patch int
}

func (v Version) String() string { return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch) }

// IsZero reports an unknown version.
func (v Version) IsZero() bool { return v == Version{} }

// Compare returns -1, 0 or 1 as v is older than, equal to or newer than w.
func (v Version) Compare(w Version) int {
	for _, d := range [3]int{v.Major - w.Major, v.Minor - w.Minor, v.Patch - w.Patch} {
		if d < 0 {
			return -1
		}
		if d > 0 {
			return 1
		}
	}
	return 0
}

// AtLeast reports v ≥ major.minor.patch.
func (v Version) AtLeast(major, minor, patch int) bool {
	return v.Compare(Version{major, minor, patch}) >= 0
}

// HasTerminate: occtl terminate user|id|session (invalidates the session
// cookie, so the kick sticks) exists from 1.4.2.
func (v Version) HasTerminate() bool { return v.AtLeast(1, 4, 2) }

// HasRawConnectedAt: show users prints raw_connected_at (seconds) from
// 1.2.3; before, only the minute-resolution local "Connected at".
func (v Version) HasRawConnectedAt() bool { return v.AtLeast(1, 2, 3) }

// HasDuplicateTX: show users prints a second "TX" key (the rate limit)
// until 1.2.1.
func (v Version) HasDuplicateTX() bool { return !v.IsZero() && !v.AtLeast(1, 2, 1) }

// ValidIRoutesJSON: show iroutes prints valid JSON from 1.4.0.
func (v Version) ValidIRoutesJSON() bool { return v.AtLeast(1, 4, 0) }

// ValidBansJSON: show ip bans prints valid JSON from 1.4.1.
func (v Version) ValidBansJSON() bool { return v.AtLeast(1, 4, 1) }

// versionRE finds "1.2.3" (or "1.2") in version banners such as
// "OpenConnect server control (occtl) version 1.1.6" and "ocserv 1.1.6".
var versionRE = regexp.MustCompile(`(?:^|[^0-9.])([0-9]{1,4})\.([0-9]{1,4})(?:\.([0-9]{1,6}))?(?:[^0-9.]|$)`)

// ParseVersion finds the first version number in text (a banner or a
// bare "1.1.6").
func ParseVersion(text string) (Version, error) {
	m := versionRE.FindStringSubmatch(text)
	if m == nil {
		return Version{}, fmt.Errorf("no version number in %q", clip(text))
	}
	var v Version
	v.Major, _ = strconv.Atoi(m[1])
	v.Minor, _ = strconv.Atoi(m[2])
	if m[3] != "" {
		v.Patch, _ = strconv.Atoi(m[3])
	}
	return v, nil
}

// Version runs `occtl --version` (1.1.6 prints its banner on stderr, so
// both streams are read) and parses the version. It needs no socket.
func (o *Occtl) Version(ctx context.Context) (Version, error) {
	res, err := o.run(ctx, false, "--version")
	if err != nil {
		return Version{}, err
	}
	v, err := ParseVersion(string(res.Stdout) + "\n" + res.Stderr)
	if err != nil {
		return Version{}, fmt.Errorf("occtl --version: %w", err)
	}
	return v, nil
}

// OcservVersion runs `<path> --version` (path "" means "ocserv"; its
// banner "ocserv 1.1.6" goes to stderr in 1.1.6) through the same launcher
// as o, and parses the version.
func (o *Occtl) OcservVersion(ctx context.Context, path string) (Version, error) {
	if path == "" {
		path = "ocserv"
	}
	res, err := o.exec(ctx, "ocserv --version", append(append([]string{}, o.Launcher...), path, "--version"))
	if err != nil {
		return Version{}, err
	}
	if res.ExitCode != 0 {
		return Version{}, &CommandError{Command: "ocserv --version", Reply: res}
	}
	v, err := ParseVersion(string(res.Stdout) + "\n" + res.Stderr)
	if err != nil {
		return Version{}, fmt.Errorf("ocserv --version: %w", err)
	}
	return v, nil
}

// DetectVersion returns the version that decides how output must be read:
// occtl's, since occtl prints the JSON (`occtl --version`); when occtl
// cannot tell (an unexpected banner), ocserv's (`ocservPath --version`,
// "" meaning "ocserv"), which Debian and upstream ship in step with it.
// Both failing is an error naming both.
func (o *Occtl) DetectVersion(ctx context.Context, ocservPath string) (Version, error) {
	v, err := o.Version(ctx)
	if err == nil {
		return v, nil
	}
	v, err2 := o.OcservVersion(ctx, ocservPath)
	if err2 == nil {
		return v, nil
	}
	return Version{}, fmt.Errorf("no version: %v; %v", err, err2)
}
