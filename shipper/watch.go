package shipper

import (
	"log/slog"
	"path/filepath"

	"github.com/fsnotify/fsnotify"

	"github.com/ocserv-telemetry/ocserv-telemetry/spool"
)

// Watch pokes the returned channel when the queue file or the fallback
// directory changes, so an appended event is read within milliseconds.
// Notifications are coalesced (one pending poke is enough: the loop reads
// everything new). Changes to the shipper's own files are ignored. The poll
// in Run covers whatever inotify misses (its queue overflowing, a
// directory made after the watch started).
func Watch(dir string, log *slog.Logger) (<-chan struct{}, func(), error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, nil, err
	}
	if err := w.Add(dir); err != nil {
		w.Close()
		return nil, nil, err
	}
	fb := filepath.Join(dir, spool.FallbackDir)
	fbWatched := w.Add(fb) == nil
	ch := make(chan struct{}, 1)
	done := make(chan struct{})
	poke := func() {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	go func() {
		defer close(done)
		for {
			select {
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				switch {
				case filepath.Base(ev.Name) == spool.QueueFile:
					poke()
				case ev.Name == fb:
					if !fbWatched && ev.Has(fsnotify.Create) {
						fbWatched = w.Add(fb) == nil
					}
					poke()
				case filepath.Dir(ev.Name) == fb:
					poke()
				}
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				// An overflowed inotify queue loses events; the poll
				// catches up, so one warning is enough.
				log.Warn("spool watch error; relying on polling", "err", err.Error())
				poke()
			}
		}
	}()
	stop := func() {
		w.Close()
		<-done
	}
	return ch, stop, nil
}
