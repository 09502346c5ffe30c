package engine

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/cmdsvc"
)

// Enforcer ends sessions and keeps users out on one server. The engine's
// is CommandEnforcer: signed commands with the ledger's policy key, whose
// role allows exactly these three actions (docs/policy.md).
type Enforcer interface {
	// Kick puts user on server's kick list for d and ends their sessions
	// there.
	Kick(ctx context.Context, server, user, reason string, d time.Duration) error
	// Unkick lifts the policy's kick of user on server.
	Unkick(ctx context.Context, server, user string) error
	// Disconnect ends worker id on server if it is still user's.
	Disconnect(ctx context.Context, server string, id int64, user string) error
}

// CommandEnforcer sends the commands through the command service.
type CommandEnforcer struct {
	Client *cmdsvc.Client
}

// ErrRefused is a command the server answered with an error (other than
// "nothing to do").
var ErrRefused = errors.New("refused")

func (c *CommandEnforcer) do(ctx context.Context, server, action string, args map[string]string) error {
	rep, err := c.Client.Do(ctx, server, action, args)
	if err != nil {
		return err
	}
	if rep.OK {
		return nil
	}
	if rep.Error != nil && rep.Error.Code == cmdsvc.CodeNotFound {
		return nil // no session, no kick, another user's worker: nothing to end
	}
	code, msg := "", ""
	if rep.Error != nil {
		code, msg = rep.Error.Code, rep.Error.Message
	}
	return fmt.Errorf("%s %s: %w: %s: %s", server, action, ErrRefused, code, msg)
}

// Kick implements Enforcer.
func (c *CommandEnforcer) Kick(ctx context.Context, server, user, reason string, d time.Duration) error {
	return c.do(ctx, server, "kick", map[string]string{"user": user, "reason": reason, "for": d.String()})
}

// Unkick implements Enforcer.
func (c *CommandEnforcer) Unkick(ctx context.Context, server, user string) error {
	return c.do(ctx, server, "unkick", map[string]string{"user": user})
}

// Disconnect implements Enforcer.
func (c *CommandEnforcer) Disconnect(ctx context.Context, server string, id int64, user string) error {
	return c.do(ctx, server, "disconnect", map[string]string{"id": strconv.FormatInt(id, 10), "if_user": user})
}
