package spool

import (
	"fmt"
	"io"
	"os"
	"path"

	"golang.org/x/sys/unix"
)

// openFlags are added to every open: never follow a symlink planted in the
// spool, never leak a descriptor into a child (the hook runs scripts).
const openFlags = unix.O_NOFOLLOW | unix.O_CLOEXEC

func mkdirAt(dirfd int, name string) error {
	err := unix.Mkdirat(dirfd, name, DirMode)
	if err == unix.EEXIST {
		return nil
	}
	if err != nil {
		return fmt.Errorf("mkdir %s: %w", name, err)
	}
	// Mkdirat honours the umask; set the mode we mean.
	return unix.Fchmodat(dirfd, name, DirMode, 0)
}

// createExcl creates a new file with exactly mode, whatever the umask.
func createExcl(dirfd int, name string, flags int, mode uint32) (int, error) {
	fd, err := unix.Openat(dirfd, name, flags|unix.O_CREAT|unix.O_EXCL|openFlags, mode)
	if err != nil {
		return -1, err
	}
	if err := unix.Fchmod(fd, mode); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// openOrCreate opens name, creating it with exactly mode when missing.
func openOrCreate(dirfd int, name string, flags int, mode uint32) (fd int, created bool, err error) {
	for i := 0; i < 2; i++ {
		fd, err = unix.Openat(dirfd, name, flags|openFlags, 0)
		if err != unix.ENOENT {
			return fd, false, err
		}
		fd, err = createExcl(dirfd, name, flags, mode)
		if err != unix.EEXIST { // lost a race with another creator: open theirs
			return fd, err == nil, err
		}
	}
	return -1, false, err
}

// readFileAt reads a small file relative to dirfd, at most max bytes. It
// uses plain read(2) rather than os.File (whose setup costs the hook an
// fcntl per file); a file that fits in one read costs open, read, close.
func readFileAt(dirfd int, name string, max int64) ([]byte, error) {
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|openFlags, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	buf := make([]byte, 0, 512)
	for int64(len(buf)) < max {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		end := cap(buf)
		if int64(end) > max {
			end = int(max)
		}
		n, err := unix.Read(fd, buf[len(buf):end])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		buf = buf[:len(buf)+n]
		if n == 0 || len(buf) < end {
			break // EOF, or a short read of a small file: regular files read whole
		}
	}
	return buf, nil
}

// writeFileAtomic replaces name with data: a temporary file in the same
// directory, written, optionally synced, then renamed over name. A reader
// sees the old or the new content, never a mix; on any error the temporary
// file is removed.
func writeFileAtomic(dirfd int, name string, data []byte, mode uint32, durable bool) (err error) {
	dir, base := path.Split(name) // the temporary file must share name's directory
	tmp := dir + ".tmp-" + base + "-" + newUUID()[:8]
	fd, err := createExcl(dirfd, tmp, unix.O_WRONLY, mode)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			unix.Unlinkat(dirfd, tmp, 0)
		}
	}()
	f := os.NewFile(uintptr(fd), tmp)
	if _, err = f.Write(data); err != nil {
		f.Close()
		return err
	}
	if durable {
		if err = f.Sync(); err != nil {
			f.Close()
			return err
		}
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = unix.Renameat(dirfd, tmp, dirfd, name); err != nil {
		return err
	}
	if durable {
		return fsyncDirOf(dirfd, dir)
	}
	return nil
}

// fsyncDirOf makes a rename in sub (relative to dirfd, "" for dirfd itself)
// durable.
func fsyncDirOf(dirfd int, sub string) error {
	if sub == "" {
		return unix.Fsync(dirfd)
	}
	fd, err := unix.Openat(dirfd, sub, unix.O_RDONLY|unix.O_DIRECTORY|openFlags, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Fsync(fd)
}

// writeAll writes b with as many write(2) calls as it takes.
func writeAll(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return io.ErrShortWrite
		}
		b = b[n:]
	}
	return nil
}
