package ocpasswd

import (
	"errors"
	"strings"
	"testing"
)

func TestValidUser(t *testing.T) {
	good := []string{"alice", "bob.smith", "a_b-c", "alice@example.com", "x+y", "A1", strings.Repeat("a", MaxNameLen)}
	for _, n := range good {
		if err := ValidUser(n); err != nil {
			t.Errorf("ValidUser(%q) = %v, want nil", n, err)
		}
	}
	bad := []string{
		"", "-l", "--delete", ".", "..", "../etc/passwd", ".hidden", "a/b", "a\\b",
		"a:b", "a\nb", "a\rb", "a\x00b", "a b", "a\tb", "a;b", "$(id)", "`id`", "a|b", "a&b",
		"a'b", `a"b`, "a*b", "*", "a,b", "a!b", "é", "a\u200bb", strings.Repeat("a", MaxNameLen+1),
		strings.Repeat("x", 1<<20),
	}
	for _, n := range bad {
		err := ValidUser(n)
		if err == nil {
			t.Errorf("ValidUser(%q) accepted", clip(n))
			continue
		}
		if !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("ValidUser(%q) = %v, not ErrInvalidArgument", clip(n), err)
		}
		if len(err.Error()) > 200 {
			t.Errorf("ValidUser error of %d bytes: hostile input must be clipped", len(err.Error()))
		}
	}
}

func TestValidGroups(t *testing.T) {
	for _, g := range []string{"", "staff", "staff,admins", "g1,g2,g3"} {
		if err := ValidGroups(g); err != nil {
			t.Errorf("ValidGroups(%q) = %v", g, err)
		}
	}
	for _, g := range []string{"*", "x", "staff,", ",staff", "a,,b", "st aff", "staff:x", "staff\n", "../g", "-g", "$(id)", "g;rm", strings.Repeat("g,", 600)} {
		if err := ValidGroups(g); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("ValidGroups(%q) = %v, want ErrInvalidArgument", clip(g), err)
		}
	}
}

func TestValidPassword(t *testing.T) {
	for _, pw := range []string{"x", "correct horse battery staple", "p:a;s$(s)`w'\"d", "пароль", strings.Repeat("p", MaxPasswordLen)} {
		if err := ValidPassword(pw); err != nil {
			t.Errorf("ValidPassword(%q) = %v", pw, err)
		}
	}
	for _, pw := range []string{"", "a\nb", "secret\n", "a\rb", "a\x00b", strings.Repeat("p", MaxPasswordLen+1)} {
		err := ValidPassword(pw)
		if !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("ValidPassword(%q) = %v, want ErrInvalidArgument", clip(pw), err)
			continue
		}
		if pw != "" && strings.Contains(err.Error(), pw) {
			t.Errorf("error %q contains the password", err)
		}
	}
}

func TestParse(t *testing.T) {
	in := "# comment without colon\nalice:*:$5$s$h\nbob:staff:!$5$s$h\ncarol:g1,g2:$5$s$h\n\ndave::$1$x\n"
	es, err := Parse(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []Entry{{User: "alice"}, {User: "bob", Groups: []string{"staff"}, Locked: true},
		{User: "carol", Groups: []string{"g1", "g2"}}, {User: "dave"}}
	if len(es) != len(want) {
		t.Fatalf("Parse = %+v, want %+v", es, want)
	}
	for i := range want {
		if es[i].User != want[i].User || es[i].Group() != want[i].Group() || es[i].Locked != want[i].Locked {
			t.Errorf("entry %d = %+v, want %+v", i, es[i], want[i])
		}
	}
	if _, err := Parse(strings.NewReader("broken:line\n")); err == nil {
		t.Errorf("a line with two fields parsed")
	}
}
