package console

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
)

//go:embed static
var staticFS embed.FS

//go:embed templates
var templateFS embed.FS

// asset is one embedded static file, served under a URL that carries its
// checksum, so it can be cached forever: a new build with a changed file
// has a new URL.
type asset struct {
	name  string // path under static/, e.g. "vendor/htmx.min.js"
	sum   string // first 16 hex digits of its SHA-256
	ctype string
	body  []byte
}

type assets struct {
	byName map[string]*asset
}

func loadAssets() (*assets, error) {
	a := &assets{byName: map[string]*asset{}}
	err := fs.WalkDir(staticFS, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := staticFS.ReadFile(p)
		if err != nil {
			return err
		}
		name := strings.TrimPrefix(p, "static/")
		ext := path.Ext(name)
		ctype := mime.TypeByExtension(ext)
		switch ext {
		case ".js":
			ctype = "text/javascript; charset=utf-8"
		case ".css":
			ctype = "text/css; charset=utf-8"
		case ".svg":
			ctype = "image/svg+xml"
		case ".png":
			ctype = "image/png"
		case "":
			ctype = "text/plain; charset=utf-8"
		}
		if ctype == "" {
			ctype = "application/octet-stream"
		}
		h := sha256.Sum256(b)
		a.byName[name] = &asset{name: name, sum: hex.EncodeToString(h[:8]), ctype: ctype, body: b}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("console assets: %w", err)
	}
	return a, nil
}

// url is the checksum URL of name; templates call it through "asset", and
// an unknown name fails the template at start (see parseViews).
func (a *assets) url(name string) (string, error) {
	f, ok := a.byName[name]
	if !ok {
		return "", fmt.Errorf("no embedded asset %q", name)
	}
	return "/static/" + f.sum + "/" + f.name, nil
}

// serve answers GET /static/{sum}/{name...}. A stale checksum is a 404,
// not the current file: an immutable URL must never change its content.
func (a *assets) serve(w http.ResponseWriter, r *http.Request) {
	f, ok := a.byName[r.PathValue("name")]
	if !ok || f.sum != r.PathValue("sum") {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", f.ctype)
	w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	w.Header().Set("ETag", `"`+f.sum+`"`)
	if r.Header.Get("If-None-Match") == `"`+f.sum+`"` {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Write(f.body)
}
