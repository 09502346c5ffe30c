package console

import (
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Live stream timing: changes are coalesced for liveBatch (a burst of
// connects is one update), and a comment every liveBeat keeps proxies
// from closing an idle stream.
const (
	liveBatch = 100 * time.Millisecond
	liveBeat  = 20 * time.Second
)

// crlf turns every line end an EventSource knows into "\n".
var crlf = strings.NewReplacer("\r\n", "\n", "\r", "\n")

// handleLive streams server-sent events: the overview's or the online
// list's body, re-rendered on the server at every change of the live
// state and swapped into the open page by htmx's sse extension. Each
// event is HTML rendered by the same templates as the page, so the page
// and its updates cannot disagree. The stream ends when the session does.
func (s *Server) handleLive(w http.ResponseWriter, r *http.Request, c *reqCtx) {
	var render func() (string, error)
	event := r.URL.Query().Get("view")
	switch event {
	case "overview":
		render = func() (string, error) {
			d, err := s.overviewData(r.Context())
			if err != nil {
				return "", err
			}
			return s.fragment("overview", "overview-body", d)
		}
	case "online":
		f, bad := readOnlineFilter(r)
		if bad != "" {
			s.fail(w, r, c, http.StatusBadRequest, "Bad filter: "+bad+".")
			return
		}
		render = func() (string, error) {
			return s.fragment("online", "online-body", s.onlineData(f, c.Account.Role.CanAct(), c.Session.CSRF))
		}
	default:
		s.fail(w, r, c, http.StatusBadRequest, "Bad live view: want overview or online.")
		return
	}
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	changes, stop := s.o.Live.Subscribe()
	defer stop()
	send := func() bool {
		html, err := render()
		if err != nil {
			s.o.Log.Warn("console: live update", "view", event, "err", err.Error())
			return true // the next change tries again
		}
		var b strings.Builder
		b.WriteString("event: " + event + "\n")
		// An EventSource ends a line at CR as well as LF, and a value
		// in the page (a user's name) may hold a CR: split on both, or
		// the rest of the value would be read as a field of its own
		// ("event: logout"). HTML reads CR as LF anyway.
		for _, line := range strings.Split(crlf.Replace(html), "\n") {
			b.WriteString("data: " + line + "\n")
		}
		b.WriteString("\n")
		if _, err := fmt.Fprint(w, b.String()); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if !send() {
		return
	}
	beat := time.NewTicker(liveBeat)
	defer beat.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-changes:
			t := time.NewTimer(liveBatch)
			select {
			case <-r.Context().Done():
				t.Stop()
				return
			case <-t.C:
			}
			if !send() {
				return
			}
		case <-beat.C:
			if _, ok := s.session(r); !ok {
				fmt.Fprint(w, "event: logout\ndata: session ended\n\n")
				rc.Flush()
				return
			}
			if _, err := fmt.Fprint(w, ": beat\n\n"); err != nil || rc.Flush() != nil {
				return
			}
		}
	}
}
