package console

import (
	"bytes"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"path"
	"sort"
	"strings"
	"text/template/parse"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/cmdsvc"
)

// viewDefs declares each page and the partials it uses; start-up fails
// when a page or partial calls a template that is not declared here, so a
// missing partial is found by the first `go test`, not by a user.
var viewDefs = map[string][]string{
	"login":    nil,
	"error":    nil,
	"overview": {"overview-body"},
	"online":   {"online-body", "online-rows"},
	"user":     {"online-rows", "session-rows", "audit-rows", "pager", "policy-standing"},
	"search":   {"session-rows", "pager"},
	"audit":    {"audit-rows", "pager"},
	"sessions": nil,
	"confirm":  nil,
	// fleet policies (docs/policy.md), when the ledger runs them
	"policy-confirm": nil,
	"policies":       {"pager"},
}

type viewTmpl struct {
	t *template.Template
}

func parseViews(a *assets) (map[string]*viewTmpl, error) {
	funcs := templateFuncs(a)
	out := map[string]*viewTmpl{}
	for name, partials := range viewDefs {
		files := []string{"templates/layout.html", "templates/pages/" + name + ".html"}
		for _, p := range partials {
			files = append(files, "templates/partials/"+p+".html")
		}
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, files...)
		if err != nil {
			return nil, fmt.Errorf("console view %s: %w", name, err)
		}
		if err := checkCalls(t); err != nil {
			return nil, fmt.Errorf("console view %s: %w", name, err)
		}
		out[name] = &viewTmpl{t: t}
	}
	// Every file must belong to a view: a stray partial is a mistake.
	used := map[string]bool{"templates/layout.html": true}
	for name, partials := range viewDefs {
		used["templates/pages/"+name+".html"] = true
		for _, p := range partials {
			used["templates/partials/"+p+".html"] = true
		}
	}
	err := fs.WalkDir(templateFS, "templates", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && !used[p] {
			return fmt.Errorf("template %s is in no view (viewDefs)", p)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("console views: %w", err)
	}
	// Asset names are checked by executing nothing: "asset" fails at
	// parse time through checkAssets.
	return out, checkAssets(out, a)
}

// checkCalls fails when a template calls one the set does not define.
func checkCalls(t *template.Template) error {
	defined := map[string]bool{}
	for _, x := range t.Templates() {
		defined[x.Name()] = true
	}
	var missing []string
	var walk func(n parse.Node)
	walk = func(n parse.Node) {
		switch n := n.(type) {
		case *parse.ListNode:
			if n == nil {
				return
			}
			for _, c := range n.Nodes {
				walk(c)
			}
		case *parse.TemplateNode:
			if !defined[n.Name] {
				missing = append(missing, n.Name)
			}
		case *parse.IfNode:
			walk(n.List)
			walk(n.ElseList)
		case *parse.RangeNode:
			walk(n.List)
			walk(n.ElseList)
		case *parse.WithNode:
			walk(n.List)
			walk(n.ElseList)
		}
	}
	for _, x := range t.Templates() {
		if x.Tree != nil {
			walk(x.Tree.Root)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return fmt.Errorf("calls undeclared templates %s (declare the partials in viewDefs)", strings.Join(missing, ", "))
	}
	return nil
}

// checkAssets fails when a template names an asset that is not embedded.
func checkAssets(views map[string]*viewTmpl, a *assets) error {
	for name, v := range views {
		for _, x := range v.t.Templates() {
			if x.Tree == nil {
				continue
			}
			var err error
			var walk func(n parse.Node)
			walk = func(n parse.Node) {
				switch n := n.(type) {
				case *parse.ListNode:
					if n == nil {
						return
					}
					for _, c := range n.Nodes {
						walk(c)
					}
				case *parse.ActionNode:
					for _, cmd := range n.Pipe.Cmds {
						if len(cmd.Args) == 2 {
							if id, ok := cmd.Args[0].(*parse.IdentifierNode); ok && id.Ident == "asset" {
								if s, ok := cmd.Args[1].(*parse.StringNode); ok {
									if _, e := a.url(s.Text); e != nil && err == nil {
										err = fmt.Errorf("console view %s: %w", name, e)
									}
								}
							}
						}
					}
				case *parse.IfNode:
					walk(n.List)
					walk(n.ElseList)
				case *parse.RangeNode:
					walk(n.List)
					walk(n.ElseList)
				case *parse.WithNode:
					walk(n.List)
					walk(n.ElseList)
				}
			}
			walk(x.Tree.Root)
			if err != nil {
				return err
			}
		}
	}
	return nil
}

func templateFuncs(a *assets) template.FuncMap {
	return template.FuncMap{
		"asset":    a.url,
		"userPath": userPath,
		// actionable: the hosts' command service takes this name (the
		// buttons of a name it refuses would only lead to an error).
		"actionable": func(name string) bool { _, err := cmdsvc.ValidName(name); return err == nil },
		"bytes":      humanBytes,
		"rate": func(f float64) string {
			return humanBytes(int64(f)) + "/s"
		},
		"when": func(t time.Time) string {
			if t.IsZero() {
				return "—"
			}
			return t.UTC().Format("2006-01-02 15:04:05")
		},
		"iso": func(t time.Time) string {
			if t.IsZero() {
				return ""
			}
			return t.UTC().Format(time.RFC3339)
		},
		"dur":   func(sec int64) string { return humanDuration(time.Duration(sec) * time.Second) },
		"since": humanSince,
		"q": func(kv ...string) string { // a query string from pairs, empty values left out
			var b strings.Builder
			for i := 0; i+1 < len(kv); i += 2 {
				if kv[i+1] == "" {
					continue
				}
				if b.Len() > 0 {
					b.WriteByte('&')
				}
				b.WriteString(template.URLQueryEscaper(kv[i]) + "=" + template.URLQueryEscaper(kv[i+1]))
			}
			return b.String()
		},
		"base": path.Base,
	}
}

func humanBytes(n int64) string {
	if n < 0 {
		return "—"
	}
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func humanDuration(d time.Duration) string {
	if d < 0 {
		return "—"
	}
	d = d.Round(time.Second)
	h, m, s := int64(d/time.Hour), int64(d/time.Minute)%60, int64(d/time.Second)%60
	switch {
	case h >= 48:
		return fmt.Sprintf("%dd %dh", h/24, h%24)
	case h > 0:
		return fmt.Sprintf("%dh %02dm", h, m)
	case m > 0:
		return fmt.Sprintf("%dm %02ds", m, s)
	}
	return fmt.Sprintf("%ds", s)
}

// humanSince is "3m 02s ago" from t to now (the second argument).
func humanSince(t, now time.Time) string {
	if t.IsZero() {
		return "never"
	}
	if now.Before(t) {
		return "just now"
	}
	return humanDuration(now.Sub(t)) + " ago"
}

// view is one page being built: the view builder adds what every page
// needs (the user, role, CSRF token and flash) so no handler forgets it.
type view struct {
	s    *Server
	name string
	data map[string]any
}

func (s *Server) view(r *http.Request, c *reqCtx, name, title string) *view {
	v := &view{s: s, name: name, data: map[string]any{
		"Title": title, "Path": r.URL.Path, "Now": s.o.Now().UTC(), "Nav": name, "PoliciesOn": s.o.Policies != nil,
	}}
	if c != nil {
		v.data["User"] = c.Account.Name
		v.data["Role"] = string(c.Account.Role)
		v.data["CanAct"] = c.Account.Role.CanAct()
		v.data["CSRF"] = c.Session.CSRF
		v.data["Flash"] = s.o.Sessions.TakeFlash(c.Session.ID)
	}
	return v
}

func (v *view) set(k string, x any) *view {
	v.data[k] = x
	return v
}

// render executes the page into a buffer first: a template error becomes
// a clean error page, never half a page.
func (v *view) render(w http.ResponseWriter, status int) {
	var b bytes.Buffer
	if err := v.s.views[v.name].t.ExecuteTemplate(&b, "layout.html", v.data); err != nil {
		v.s.o.Log.Error("console: render", "view", v.name, "err", err.Error())
		http.Error(w, "Internal error rendering the page; it has been logged.", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(b.Bytes())
}

// fragment renders one partial of a view (for the live stream).
func (s *Server) fragment(view, name string, data map[string]any) (string, error) {
	var b bytes.Buffer
	if err := s.views[view].t.ExecuteTemplate(&b, name, data); err != nil {
		return "", err
	}
	return b.String(), nil
}

// fail renders the error page with a message a person can act on.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, c *reqCtx, status int, msg string) {
	s.view(r, c, "error", http.StatusText(status)).set("Status", status).set("Message", msg).render(w, status)
}
