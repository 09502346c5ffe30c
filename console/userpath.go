package console

import (
	"net/url"
	"strings"
)

// userPath is the address of a VPN user's page. ocserv accepts names the
// command service cannot ("john smith", "a/b", "x?y", "c#d" from RADIUS or
// certificates), so the name is escaped as one path segment: a '/', '?'
// or '#' in it must not make the link another path, a query or a
// fragment (the page of "c" for "c#d"). "." and ".." cannot be a path
// segment at all (browsers and the router fold them away, even escaped),
// so they go in the query of /user.
func userPath(name string) string {
	if strings.Trim(name, ".") == "" && len(name) <= 2 {
		return "/user?" + url.Values{"name": {name}}.Encode()
	}
	return "/users/" + url.PathEscape(name)
}

// withQuery adds one key=value to a path that may have a query already.
func withQuery(path, key, value string) string {
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	return path + sep + url.Values{key: {value}}.Encode()
}
