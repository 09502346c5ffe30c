package cmdsvc

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/ocserv-telemetry/ocserv-telemetry/ocpasswd"
	"github.com/ocserv-telemetry/ocserv-telemetry/opauth"
	"github.com/ocserv-telemetry/ocserv-telemetry/userconf"
)

// More error codes of the account actions.
const (
	CodeExists = "exists"
	CodeBusy   = "busy"
)

// UserActions are user-list and user-add|passwd|delete|lock|unlock|group
// through the real ocpasswd (package ocpasswd). Passwords arrive sealed
// to the server's curve key and go to ocpasswd's stdin only.
func UserActions(pw *ocpasswd.Passwd) []Action {
	user := Param{Name: "user", Required: true, Check: checkWith(ocpasswd.ValidUser)}
	group := Param{Name: "group", Check: func(s string) (string, error) { return s, ocpasswd.ValidGroups(s) }}
	sealedPW := []Param{
		{Name: "password" + opauth.SealedSuffix, Required: true, Check: sealedValue},
		{Name: opauth.SealedBy, Required: true, Check: sealedValue},
	}
	password := func(r *Request) (string, error) {
		b, err := r.Open("password")
		if err != nil {
			return "", fail(CodeInvalidArgument, "%v", err)
		}
		if err := ocpasswd.ValidPassword(string(b)); err != nil {
			return "", fail(CodeInvalidArgument, "password: %v", err)
		}
		return string(b), nil
	}
	simple := func(name, desc string, f func(context.Context, string) error) Action {
		return Action{Name: name, Role: opauth.ReadWrite, Params: []Param{user}, Desc: desc,
			Run: func(ctx context.Context, r *Request) (any, error) {
				return map[string]bool{"done": true}, accountErr(f(ctx, r.Args["user"]))
			}}
	}
	return []Action{
		{Name: "user-list", Role: opauth.ReadOnly, Desc: "the users in ocserv's password file (no hashes)",
			Run: func(ctx context.Context, r *Request) (any, error) {
				l, err := pw.List(ctx)
				if l == nil {
					l = []ocpasswd.Entry{}
				}
				return l, accountErr(err)
			}},
		{Name: "user-add", Role: opauth.ReadWrite, Params: append([]Param{user, group}, sealedPW...),
			Desc: "ocpasswd: add a user (password sealed to the server's key)",
			Run: func(ctx context.Context, r *Request) (any, error) {
				p, err := password(r)
				if err != nil {
					return nil, err
				}
				return map[string]bool{"added": true}, accountErr(pw.Add(ctx, r.Args["user"], r.Args["group"], p))
			}},
		{Name: "user-passwd", Role: opauth.ReadWrite, Params: append([]Param{user}, sealedPW...),
			Desc: "ocpasswd: set a user's password (sealed), keeping the group",
			Run: func(ctx context.Context, r *Request) (any, error) {
				p, err := password(r)
				if err != nil {
					return nil, err
				}
				return map[string]bool{"changed": true}, accountErr(pw.SetPassword(ctx, r.Args["user"], p))
			}},
		simple("user-delete", "ocpasswd -d: delete a user (sessions stay up: kick them)", pw.Delete),
		simple("user-lock", "ocpasswd -l: refuse the user's password logins (cookie resumptions still work: kick them)", pw.Lock),
		simple("user-unlock", "ocpasswd -u", pw.Unlock),
		{Name: "user-group", Role: opauth.ReadWrite, Params: []Param{user, {Name: "group", Required: true, Check: group.Check}},
			Desc: "move a user to groups (\"\" for none, or g1,g2)",
			Run: func(ctx context.Context, r *Request) (any, error) {
				return map[string]bool{"changed": true}, accountErr(pw.SetGroup(ctx, r.Args["user"], r.Args["group"]))
			}},
	}
}

// maxConfigValues bounds the values of one config-set (value, value_2, …).
const maxConfigValues = 16

// ConfigActions are config-get|set|delete on per-user and per-group files
// (package userconf): a whitelist of keys, every value validated before
// anything is written, a backup, an atomic write and rollback. ocserv
// reads these files at the user's next login, not at reload.
func ConfigActions(store *userconf.Store) []Action {
	kind := Param{Name: "kind", Required: true, Check: func(s string) (string, error) {
		if s != string(userconf.User) && s != string(userconf.Group) {
			return "", errors.New("must be user or group")
		}
		return s, nil
	}}
	name := Param{Name: "name", Required: true, Check: func(s string) (string, error) {
		if len(s) > 64 {
			return "", errors.New("longer than 64 bytes")
		}
		return s, nil // checked with its kind in checkName
	}}
	key := Param{Name: "key", Required: true, NotSecret: true, Check: func(s string) (string, error) {
		if len(s) > 64 {
			return "", errors.New("longer than 64 bytes")
		}
		return s, nil // checked against the whitelist in Check (Delete may clean up others)
	}}
	values := []Param{{Name: "value", Required: true, Check: anyText}}
	for i := 2; i <= maxConfigValues; i++ {
		values = append(values, Param{Name: "value_" + strconv.Itoa(i), Check: anyText})
	}
	checkName := func(args map[string]string) error {
		return userconf.ValidName(userconf.Kind(args["kind"]), args["name"])
	}
	return []Action{
		{Name: "config-get", Role: opauth.ReadOnly, Params: []Param{kind, name}, Check: checkName,
			Desc: "read a per-user or per-group config file",
			Run: func(ctx context.Context, r *Request) (any, error) {
				c, err := store.Get(userconf.Kind(r.Args["kind"]), r.Args["name"])
				return c, configErr(err)
			}},
		{Name: "config-set", Role: opauth.ReadWrite, Params: append([]Param{kind, name, key}, values...),
			Desc: "give a whitelisted key exactly these values (value, value_2, …) in a per-user or per-group file",
			Check: func(args map[string]string) error {
				if err := checkName(args); err != nil {
					return err
				}
				k, ok := userconf.LookupKey(args["key"])
				if !ok {
					var names []string
					for _, k := range userconf.Keys() {
						names = append(names, k.Name)
					}
					return fmt.Errorf("key %q is not one operators may set (allowed: %s)", truncate(args["key"], 40), strings.Join(names, ", "))
				}
				vs := configValues(args)
				if len(vs) > 1 && !k.Multi {
					return fmt.Errorf("key %s takes one value", k.Name)
				}
				for _, v := range vs {
					if err := userconf.ValidateValue(k.Name, v); err != nil {
						return err
					}
				}
				return nil
			},
			Run: func(ctx context.Context, r *Request) (any, error) {
				ch, err := store.Set(userconf.Kind(r.Args["kind"]), r.Args["name"], r.Args["key"], configValues(r.Args))
				return ch, configErr(err)
			}},
		{Name: "config-delete", Role: opauth.ReadWrite, Params: []Param{kind, name, key}, Check: checkName,
			Desc: "remove every line of a key from a per-user or per-group file",
			Run: func(ctx context.Context, r *Request) (any, error) {
				ch, err := store.Delete(userconf.Kind(r.Args["kind"]), r.Args["name"], r.Args["key"])
				return ch, configErr(err)
			}},
	}
}

// configValues are value, value_2, … in order; a gap ends them.
func configValues(args map[string]string) []string {
	vs := []string{args["value"]}
	for i := 2; i <= maxConfigValues; i++ {
		v, ok := args["value_"+strconv.Itoa(i)]
		if !ok {
			break
		}
		vs = append(vs, v)
	}
	return vs
}

// anyText bounds a config value; its syntax is the key's validator's job.
func anyText(s string) (string, error) {
	if len(s) > userconf.MaxValueLen {
		return "", fmt.Errorf("longer than %d bytes", userconf.MaxValueLen)
	}
	return s, nil
}

func checkWith(f func(string) error) func(string) (string, error) {
	return func(s string) (string, error) { return s, f(s) }
}

func accountErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ocpasswd.ErrNotFound):
		return &Failure{Code: CodeNotFound, Msg: err.Error()}
	case errors.Is(err, ocpasswd.ErrExists):
		return &Failure{Code: CodeExists, Msg: err.Error()}
	case errors.Is(err, ocpasswd.ErrInvalidArgument):
		return &Failure{Code: CodeInvalidArgument, Msg: err.Error()}
	case errors.Is(err, ocpasswd.ErrBusy):
		return &Failure{Code: CodeBusy, Msg: err.Error() + "; try again"}
	}
	return err
}

func configErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, userconf.ErrNotFound):
		return &Failure{Code: CodeNotFound, Msg: err.Error()}
	case errors.Is(err, userconf.ErrInvalidValue), errors.Is(err, userconf.ErrInvalidName):
		return &Failure{Code: CodeInvalidArgument, Msg: err.Error()}
	case errors.Is(err, userconf.ErrNotConfigured):
		return &Failure{Code: CodeUnsupported, Msg: err.Error() + " (set CMD_CONFIG_PER_USER / CMD_CONFIG_PER_GROUP)"}
	}
	return err
}
