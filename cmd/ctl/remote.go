package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/ocserv-telemetry/ocserv-telemetry/cmdsvc"
	"github.com/ocserv-telemetry/ocserv-telemetry/ocserv"
	"github.com/ocserv-telemetry/ocserv-telemetry/opauth"
)

// session is one connected ctl run.
type session struct {
	st      *settings
	nc      *nats.Conn
	cl      *cmdsvc.Client
	timeout time.Duration
}

func (g *globals) open(needKey bool) (*session, error) {
	st, err := loadSettings(g.config, g.getenv, func(s string) { fmt.Fprintln(g.stderr, "ctl:", s) })
	if err != nil {
		return nil, err
	}
	timeout := st.Timeout
	if g.timeout != "" {
		if timeout, err = time.ParseDuration(g.timeout); err != nil || timeout <= 0 {
			return nil, usageErr("--timeout %q is not a positive duration", g.timeout)
		}
	}
	s := &session{st: st, timeout: timeout}
	if needKey {
		kp, err := st.operatorKey()
		if err != nil {
			return nil, err
		}
		s.cl = &cmdsvc.Client{Prefix: st.Agent.SubjectPrefix, Key: kp}
	} else {
		s.cl = &cmdsvc.Client{Prefix: st.Agent.SubjectPrefix}
	}
	if s.nc, err = st.connect(timeout); err != nil {
		return nil, err
	}
	s.cl.NC = s.nc
	return s, nil
}

func (s *session) close() { s.nc.Close() }

// targets are the servers named with --server, or every server that
// answers discovery with --all (or when allIfNone and none was named).
func (g *globals) targets(s *session, allIfNone bool) ([]cmdsvc.ServerInfo, error) {
	if len(g.servers) > 0 && g.all {
		return nil, usageErr("give --server or --all, not both")
	}
	if len(g.servers) > 0 {
		var out []cmdsvc.ServerInfo
		for _, id := range g.servers {
			out = append(out, cmdsvc.ServerInfo{ServerID: id})
		}
		return out, nil
	}
	if !g.all && !allIfNone {
		return nil, usageErr("name the servers with --server (or use --all)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	found, err := s.cl.Discover(ctx, discoveryWait(s.timeout))
	if err != nil {
		return nil, err
	}
	if len(found) == 0 {
		return nil, &exitError{exitPartial, errors.New("no server answered discovery ($SRV.INFO." + cmdsvc.ServiceName + ")")}
	}
	return found, nil
}

func discoveryWait(t time.Duration) time.Duration {
	if t > time.Second {
		return time.Second
	}
	return t
}

// result is one server's answer.
type result struct {
	ServerID string             `json:"server_id"`
	OK       bool               `json:"ok"`
	Result   json.RawMessage    `json:"result,omitempty"`
	Error    *cmdsvc.ReplyError `json:"error,omitempty"`
}

// securityCodes are the refusals of the security layer (exit 4).
var securityCodes = map[string]bool{
	opauth.CodeMalformed: true, opauth.CodeUnsigned: true, opauth.CodeUnknownKey: true, opauth.CodeBadSignature: true,
	opauth.CodeWrongSubject: true, opauth.CodeExpired: true, opauth.CodeNotYetValid: true, opauth.CodeTooLong: true,
	opauth.CodeReplayed: true, opauth.CodeForbidden: true, opauth.CodeRateLimited: true, opauth.CodeOverQuota: true,
}

// scatter sends action to every target at once and waits for all answers
// or the deadline. seal, when set, adds a sealed secret per server.
func (s *session) scatter(targets []cmdsvc.ServerInfo, action string, args map[string]string, secret *sealed) []result {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	out := make([]result, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Add(1)
		go func(i int, t cmdsvc.ServerInfo) {
			defer wg.Done()
			out[i].ServerID = t.ServerID
			var rep *cmdsvc.Reply
			var err error
			if secret != nil {
				xkey := t.XKey
				if xkey == "" {
					if xkey, err = s.xkeyOf(ctx, t.ServerID); err != nil {
						out[i].Error = &cmdsvc.ReplyError{Code: "unreachable", Message: err.Error()}
						return
					}
				}
				rep, err = s.cl.DoSealed(ctx, t.ServerID, action, args, secret.name, secret.value, xkey)
			} else {
				rep, err = s.cl.Do(ctx, t.ServerID, action, args)
			}
			if err != nil {
				out[i].Error = &cmdsvc.ReplyError{Code: "unreachable", Message: err.Error()}
				return
			}
			out[i].OK, out[i].Result, out[i].Error = rep.OK, rep.Result, rep.Error
		}(i, t)
	}
	wg.Wait()
	sort.Slice(out, func(i, j int) bool { return out[i].ServerID < out[j].ServerID })
	return out
}

type sealed struct{ name, value string }

// xkeyOf finds a server's curve key through discovery.
func (s *session) xkeyOf(ctx context.Context, serverID string) (string, error) {
	found, err := s.cl.Discover(ctx, discoveryWait(s.timeout))
	if err != nil {
		return "", err
	}
	for _, f := range found {
		if f.ServerID == serverID && f.XKey != "" {
			return f.XKey, nil
		}
	}
	return "", fmt.Errorf("%s did not answer discovery, so its key to seal the password to is unknown", serverID)
}

// outcome turns the answers into an exit status: 4 if any server's
// security layer refused, else 1 if any action failed, else 3 if any
// server did not answer.
func outcome(rs []result) error {
	code := exitOK
	for _, r := range rs {
		switch {
		case r.OK:
		case r.Error != nil && securityCodes[r.Error.Code]:
			code = exitRefused
		case r.Error != nil && r.Error.Code == "unreachable":
			if code == exitOK {
				code = exitPartial
			}
		default:
			if code != exitRefused {
				code = exitFail
			}
		}
	}
	if code == exitOK {
		return nil
	}
	return &exitError{code, errors.New("")}
}

// gather runs a command on the targets and prints each server's answer
// with print (or everything as JSON).
func (g *globals) gather(action string, args map[string]string, print func(io.Writer, result) error) error {
	s, err := g.open(true)
	if err != nil {
		return err
	}
	defer s.close()
	targets, err := g.targets(s, true)
	if err != nil {
		return err
	}
	rs := s.scatter(targets, action, args, nil)
	return g.report(rs, print)
}

func (g *globals) report(rs []result, print func(io.Writer, result) error) error {
	if g.json {
		enc := json.NewEncoder(g.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(map[string]any{"servers": rs}); err != nil {
			return err
		}
		return outcome(rs)
	}
	for i, r := range rs {
		if len(rs) > 1 || !r.OK {
			if i > 0 {
				fmt.Fprintln(g.stdout)
			}
			fmt.Fprintf(g.stdout, "== %s ==\n", clean(r.ServerID))
		}
		if !r.OK {
			fmt.Fprintf(g.stdout, "error %s: %s\n", clean(r.Error.Code), clean(r.Error.Message))
			continue
		}
		if err := print(g.stdout, r); err != nil {
			return err
		}
	}
	return outcome(rs)
}

func printJSONResult(w io.Writer, r result) error {
	var v any
	if err := json.Unmarshal(r.Result, &v); err != nil {
		return err
	}
	// JSON escapes C0 controls; the writer (safeWriter) escapes what
	// JSON leaves raw (DEL, C1, bidi controls).
	b, _ := json.MarshalIndent(v, "", "  ")
	_, err := fmt.Fprintf(w, "%s\n", b)
	return err
}

func printUsers(w io.Writer, r result) error {
	var users []ocserv.User
	if err := json.Unmarshal(r.Result, &users); err != nil {
		return fmt.Errorf("%s: users: %w", r.ServerID, err)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tUSER\tGROUP\tSTATE\tREMOTE IP\tTUNNEL IP\tDEVICE\tRX\tTX")
	for _, u := range users {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\n", u.ID, dash(clean(u.Username)), dash(clean(u.Groupname)), clean(u.State),
			addr(u.RemoteIP.String()), addr(u.IPv4.String()), dash(clean(u.Device)), u.RX, u.TX)
	}
	return tw.Flush()
}

func printBans(w io.Writer, r result) error {
	var bans []ocserv.Ban
	if err := json.Unmarshal(r.Result, &bans); err != nil {
		return fmt.Errorf("%s: bans: %w", r.ServerID, err)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "IP\tSCORE\tBANNED UNTIL")
	for _, b := range bans {
		until := "-"
		if !b.Since.IsZero() {
			until = b.Since.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\n", clean(b.IP.String()), b.Score, until)
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func addr(s string) string {
	if s == "invalid IP" {
		return "-"
	}
	return s
}

// readCmds are the read-only actions.
func readCmds(g *globals) []*cobra.Command {
	simple := func(use, action, short string, print func(io.Writer, result) error) *cobra.Command {
		return &cobra.Command{Use: use, Short: short, Args: cobra.NoArgs,
			RunE: func(*cobra.Command, []string) error { return g.gather(action, nil, print) }}
	}
	one := func(use, action, arg, short string) *cobra.Command {
		return &cobra.Command{Use: use, Short: short, Args: cobra.ExactArgs(1),
			RunE: func(_ *cobra.Command, a []string) error {
				return g.gather(action, map[string]string{arg: a[0]}, printJSONResult)
			}}
	}
	var valid bool
	sessions := &cobra.Command{Use: "sessions", Short: "session cookies (occtl show sessions all|valid)", Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return g.gather("sessions", map[string]string{"valid": fmt.Sprint(valid)}, printJSONResult)
		}}
	sessions.Flags().BoolVar(&valid, "valid", false, "only cookies a client can still reconnect with")
	return []*cobra.Command{
		simple("users", "users", "connected users, a table per server (one or all servers)", printUsers),
		simple("bans", "bans", "banned addresses, a table per server (one or all servers)", printBans),
		simple("ban-points", "ban-points", "addresses with ban points", printBans),
		simple("iroutes", "iroutes", "routes users' clients provide (occtl show iroutes)", printJSONResult),
		simple("spool-status", "spool-status", "the servers' spool backlog and shipper status", printJSONResult),
		simple("kicked", "kicked", "the kick list", printJSONResult),
		sessions,
		one("id ID", "id", "id", "one worker (occtl show id)"),
		one("session SID", "session", "sid", "one session cookie (occtl show session)"),
	}
}
