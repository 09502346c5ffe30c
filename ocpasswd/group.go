package ocpasswd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// SetGroup moves user to groups ("" for no group, or "g1,g2"), keeping
// its password hash and lock. ocpasswd can only set a group together with
// a new password, so this one change is written here, with ocpasswd's own
// protocol and under the same locks: FILE.tmp is created exclusively
// (O_EXCL, so a concurrent ocpasswd sees "file is locked" rather than
// racing), filled with the file where only the group field of user's line
// differs, fsynced, and renamed over FILE. Every other byte is kept.
func (p *Passwd) SetGroup(ctx context.Context, user, groups string) error {
	if err := firstErr(ValidUser(user), ValidGroups(groups)); err != nil {
		return &Error{Op: "group", User: clip(user), Err: err}
	}
	return p.locked(ctx, "group", user, func(context.Context) error {
		e, found, err := p.lookup(user)
		if err != nil {
			return err
		}
		if !found {
			return ErrNotFound
		}
		if e.Group() == groups {
			return nil
		}
		return p.rewriteGroup(user, groups)
	})
}

func (p *Passwd) rewriteGroup(user, groups string) error {
	file := p.file()
	fi, err := os.Stat(file)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	field := groups
	if field == "" {
		field = "*"
	}
	lines := bytes.SplitAfter(data, []byte("\n"))
	changed := 0
	for i, l := range lines {
		first := bytes.IndexByte(l, ':')
		if first < 0 || string(l[:first]) != user {
			continue
		}
		second := bytes.IndexByte(l[first+1:], ':')
		if second < 0 {
			continue
		}
		second += first + 1
		nl := append([]byte{}, l[:first+1]...)
		nl = append(nl, field...)
		lines[i] = append(nl, l[second:]...)
		changed++
	}
	if changed == 0 {
		return ErrNotFound
	}
	out := bytes.Join(lines, nil)

	tmp := file + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("%w: %s appeared (an ocpasswd run outside this package)", ErrBusy, tmp)
		}
		return err
	}
	ok := false
	defer func() {
		if !ok {
			os.Remove(tmp)
		}
	}()
	if st, isSys := fi.Sys().(*syscall.Stat_t); isSys {
		_ = f.Chown(int(st.Uid), int(st.Gid)) // best effort, as root
	}
	if err := f.Chmod(fi.Mode().Perm()); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(out); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, file); err != nil {
		return err
	}
	ok = true
	if d, err := os.Open(filepath.Dir(file)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
