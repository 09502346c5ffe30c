package ledger

import (
	"io/fs"
	"strconv"
	"strings"
)

// MigrationsVersion is the highest version among goose migration files
// ("NNNNN_name.sql") in dir of fsys: the schema version a build needs.
func MigrationsVersion(fsys fs.FS, dir string) int64 {
	ents, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return 0
	}
	var v int64
	for _, e := range ents {
		num, _, ok := strings.Cut(e.Name(), "_")
		if !ok || !strings.HasSuffix(e.Name(), ".sql") {
			continue
		}
		if n, err := strconv.ParseInt(num, 10, 64); err == nil && n > v {
			v = n
		}
	}
	return v
}
